#!/usr/bin/python3
"""The deployment files of deploy/kubernetes and deploy/container agree with
each other and with dossierd, as a user applying them would need:

- every YAML parses; kustomization.yaml lists every manifest (and not the
  example Secret, which would overwrite the real key);
- the StatefulSet is governed by the headless Service, which publishes
  not-ready pods (peers must resolve before any node is ready); selectors
  of the StatefulSet, the Services and the PodDisruptionBudget match the
  pod labels;
- ports, gRPC probes, the key Secret and its mount, security settings;
- --peers has one entry per replica, named as the StatefulSet and Service
  name their pods; --advertise names the pod the same way;
- every flag of the pod's command and every key of the ConfigMap's
  node.conf exists in `dossierd --help`;
- the Containerfile's ENTRYPOINT, EXPOSE, USER and VOLUME match them;
- run for real on loopback: the pod's entrypoint script and arguments, with
  only addresses and paths moved (and Kubernetes' $(VAR) expansion done as
  Kubernetes does it), start a 3-node cluster that elects a leader and
  answers the gRPC health check SERVING; the key is taken from a Secret
  file of mode 0440 (as kubelet leaves it with fsGroup); a fourth pod from
  a scale-up waits to be added and serves once added; SIGTERM stops every
  node with status 0; with the ConfigMap's principals as shipped (none),
  a node refuses to start.

Usage: test_manifests.py DOSSIERD [DOSSIER [SOURCE_DIR]]
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import yaml

DOSSIERD = os.path.abspath(sys.argv[1])
DOSSIER = (os.path.abspath(sys.argv[2]) if len(sys.argv) > 2
           else os.path.join(os.path.dirname(DOSSIERD), "dossier"))
SRC = (sys.argv[3] if len(sys.argv) > 3 else
       os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
K8S = os.path.join(SRC, "deploy", "kubernetes")
CONTAINERFILE = os.path.join(SRC, "deploy", "container", "Containerfile")
failures = 0


def check(cond, what, detail=None):
    global failures
    print(("ok: " if cond else "FAIL: ") + what)
    if not cond:
        failures += 1
        if detail is not None:
            for line in str(detail).splitlines():
                print("    " + line)
    return cond


def k8s_expand(text, env):
    """Kubernetes' expansion of $(VAR) in command and args: a known VAR is
    replaced, $$ is a literal $, anything else is left as it is."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end >= 0:
                    name = text[i + 2:end]
                    out.append(env[name] if name in env else text[i:end + 1])
                    i = end + 1
                    continue
            out.append(text[i:i + 2])
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def flag_of(arg):
    m = re.match(r"--([a-z][a-z0-9-]*)", arg)
    return m.group(1) if m else None


def arg_value(args, flag):
    for a in args:
        if a.startswith("--" + flag + "="):
            return a.split("=", 1)[1]
    return None


# --- Every YAML parses; the kustomization lists the manifests. -------------
docs = {}
for name in sorted(os.listdir(K8S)):
    if not name.endswith((".yaml", ".yml")):
        continue
    try:
        with open(os.path.join(K8S, name)) as f:
            docs[name] = [d for d in yaml.safe_load_all(f) if d is not None]
        check(bool(docs[name]), f"{name} parses as YAML")
    except yaml.YAMLError as e:
        check(False, f"{name} parses as YAML", e)
        docs[name] = []

kust = (docs.get("kustomization.yaml") or [{}])[0]
listed = list(kust.get("resources", []))
manifests = sorted(n for n in docs
                   if n != "kustomization.yaml" and ".example." not in n)
examples = sorted(n for n in docs if ".example." in n)
check(kust.get("kind") == "Kustomization", "kustomization.yaml is a Kustomization")
check(sorted(listed) == manifests,
      "kustomization.yaml lists every manifest of deploy/kubernetes",
      f"listed {sorted(listed)}, present {manifests}")
check(not set(listed) & set(examples),
      "kustomization.yaml does not list the example Secret "
      "(applying it would replace the real key)", examples)

objects = [(n, d) for n in manifests + examples for d in docs[n]]
for n, d in objects:
    check(isinstance(d, dict) and d.get("apiVersion") and d.get("kind")
          and d.get("metadata", {}).get("name"),
          f"{n}: {d.get('kind')}/{d.get('metadata', {}).get('name')} has "
          "apiVersion, kind and name")


def find(kind, where=manifests):
    return [d for n, d in objects if d.get("kind") == kind and n in where]


sts_all = find("StatefulSet")
if not check(len(sts_all) == 1, "exactly one StatefulSet"):
    sys.exit(1)
sts = sts_all[0]
spec = sts["spec"]
pod = spec["template"]["spec"]
pod_labels = spec["template"]["metadata"].get("labels", {})
containers = pod["containers"]
check(len(containers) == 1, "one container in the pod")
c = containers[0]
replicas = spec.get("replicas", 1)
sts_name = sts["metadata"]["name"]

# --- Service, selectors, PDB. ----------------------------------------------
services = {s["metadata"]["name"]: s for s in find("Service")}
svc = services.get(spec.get("serviceName"))
check(svc is not None, f"serviceName {spec.get('serviceName')!r} is a Service "
      "of the manifests", sorted(services))
svc = svc or {"spec": {}}
check(svc["spec"].get("clusterIP") == "None", "that Service is headless "
      "(clusterIP: None)")
check(svc["spec"].get("publishNotReadyAddresses") is True,
      "the headless Service publishes not-ready pods (peers resolve before "
      "the first leader exists)")
check(labels_match(spec["selector"].get("matchLabels"), pod_labels),
      "StatefulSet selector matches the pod labels")
for name, s in services.items():
    check(labels_match(s["spec"].get("selector"), pod_labels),
          f"Service {name} selects the pods")
pdbs = find("PodDisruptionBudget")
check(len(pdbs) == 1, "one PodDisruptionBudget")
for p in pdbs:
    check(p["spec"].get("selector", {}).get("matchLabels")
          == spec["selector"].get("matchLabels"),
          "PodDisruptionBudget selects what the StatefulSet selects")
    check(p["spec"].get("maxUnavailable") == 1, "PDB maxUnavailable is 1")
check(spec.get("podManagementPolicy") == "Parallel", "podManagementPolicy Parallel")
check(replicas == 3, "3 replicas")

# --- Ports and probes. ------------------------------------------------------
cports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
check(7700 in cports.values(), "container ports include 7700", cports)
check(cports.get("grpc") == 7700 and cports.get("metrics") == 9700,
      "container ports: grpc 7700, metrics 9700", cports)
for name, s in services.items():
    for p in s["spec"].get("ports", []):
        t = p.get("targetPort", p["port"])
        check(t in cports or t in cports.values(),
              f"Service {name} port {p['port']} targets a container port ({t})")
hs_ports = {p["port"] for p in svc["spec"].get("ports", [])}
check(hs_ports == {7700, 9700}, "headless Service ports 7700 and 9700", hs_ports)
rp, lp = c.get("readinessProbe", {}), c.get("livenessProbe", {})
check(rp.get("grpc", {}).get("port") == 7700 and rp["grpc"].get("service") == "",
      "readiness probe: gRPC health on 7700, service \"\"", rp)
check(lp.get("grpc", {}).get("port") == 7700, "liveness probe: gRPC health on 7700", lp)
patience = lp.get("failureThreshold", 3) * lp.get("periodSeconds", 10)
check(patience >= 300, f"liveness probe is patient ({patience} s >= 300 s: a "
      "node without a leader is NOT_SERVING but healthy)")

# --- Key Secret, mounts, security. ------------------------------------------
volumes = {v["name"]: v for v in pod.get("volumes", [])}
mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
example_secrets = {s["metadata"]["name"]: s for s in find("Secret", examples)}
key_vols = [v for v in volumes.values() if "secret" in v]
check(len(key_vols) == 1, "one Secret volume (the master key)")
script = c["command"][2] if len(c.get("command", [])) > 2 else ""
key_src = None
for v in key_vols:
    sname = v["secret"].get("secretName")
    check(sname in example_secrets,
          f"the key Secret {sname!r} is the one secret.example.yaml defines",
          sorted(example_secrets))
    ex = example_secrets.get(sname, {})
    ex_keys = set(ex.get("stringData", {})) | set(ex.get("data", {}))
    items = v["secret"].get("items") or [{"key": k, "path": k} for k in ex_keys]
    for it in items:
        check(it["key"] in ex_keys, f"Secret key {it['key']!r} is in the example",
              sorted(ex_keys))
    check(v["secret"].get("defaultMode") == 0o400, "key volume defaultMode 0400",
          v["secret"].get("defaultMode"))
    m = mounts.get(v["name"])
    if check(m is not None and m.get("readOnly") is True,
             "key volume mounted read-only"):
        key_src = os.path.join(m["mountPath"], items[0]["path"])
        check(key_src in script, f"the entrypoint reads the key from {key_src}")
    for name, s in example_secrets.items():
        text = json.dumps(s)
        check(not re.search(r"[0-9a-fA-F]{64}", text),
              f"{name} in the example holds no key (no 64 hex digits)")
psc = pod.get("securityContext", {})
csc = c.get("securityContext", {})
check(psc.get("runAsNonRoot") is True and isinstance(psc.get("runAsUser"), int)
      and psc["runAsUser"] > 0, "pod runs as a non-root numeric user")
check(psc.get("fsGroup") == psc.get("runAsGroup"),
      "fsGroup is the user's group (volume writable, key file readable)")
check(csc.get("readOnlyRootFilesystem") is True, "read-only root file system")
check(csc.get("allowPrivilegeEscalation") is False, "no privilege escalation")
check(csc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities drop ALL")
check(pod.get("terminationGracePeriodSeconds", 30) >= 60,
      "termination grace period of 60 s or more")
check("preStop" in c.get("lifecycle", {}), "a preStop hook")
res = c.get("resources", {})
check(res.get("requests", {}).get("memory") and res.get("limits", {}).get("memory"),
      "memory request and limit", res)
vcts = {t["metadata"]["name"]: t for t in spec.get("volumeClaimTemplates", [])}
data_mount = next((mounts[n]["mountPath"] for n in vcts if n in mounts), None)
check(data_mount == "/var/lib/dossier",
      "a volumeClaimTemplate is mounted at /var/lib/dossier", data_mount)

# --- Kubernetes' expansion, peers, advertise. -------------------------------
NS = "crm-test"
pod_env = {"POD_NAME": f"{sts_name}-0", "POD_NAMESPACE": NS}
check(k8s_expand(script, pod_env) == script,
      "the entrypoint script is left alone by Kubernetes' $(VAR) expansion")
args = [k8s_expand(a, pod_env) for a in c.get("args", [])]
check(all(a.startswith("--") and "=" in a for a in args),
      "every argument is one --flag=value (the script finds --peers so)", args)
peers = (arg_value(args, "peers") or "").split(",")
svc_name = spec.get("serviceName")
check(len(peers) == replicas, f"--peers has {replicas} entries (replicas)", peers)
for i, p in enumerate(peers):
    want = f"{i + 1}={sts_name}-{i}.{svc_name}.{NS}.svc.cluster.local:7700"
    check(p == want, f"peer {i + 1} is {want}", p)
check(arg_value(args, "advertise")
      == f"{sts_name}-0.{svc_name}.{NS}.svc.cluster.local:7700",
      "--advertise names the pod through the headless Service",
      arg_value(args, "advertise"))
check(arg_value(args, "listen") == "0.0.0.0:7700", "--listen 0.0.0.0:7700")
data_dir = arg_value(args, "data-dir") or ""
check(data_mount and data_dir.startswith(data_mount + "/"),
      "--data-dir is a directory inside the data volume (not its root, which "
      "may hold lost+found)", data_dir)
env_names = {e["name"] for e in c.get("env", [])}
used_vars = set(re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", " ".join(c.get("args", []))))
check(used_vars <= env_names, "every $(VAR) of the args is a container env var",
      used_vars - env_names)

# --- Flags and config keys against dossierd --help. -------------------------
help_text = subprocess.run([DOSSIERD, "--help"], capture_output=True,
                           text=True).stdout
known = set(re.findall(r"^\s+--([a-z][a-z0-9-]*)", help_text, re.M))
check("listen" in known and "peers" in known, "dossierd --help lists its flags")
used = {flag_of(a) for a in args} | set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", script))
used.discard(None)
configmaps = {m["metadata"]["name"]: m for m in find("ConfigMap")}
conf_keys = set()
for cm in configmaps.values():
    conf = cm.get("data", {}).get("node.conf")
    if conf:
        conf_keys |= set(re.findall(r"^\s*([a-z_][a-z0-9_]*)\s*=", conf, re.M))
check(conf_keys, "the ConfigMap holds a node.conf with settings")
for flag in sorted(used | {k.replace("_", "-") for k in conf_keys}):
    if flag not in known and flag == "metrics-listen":
        print("note: --metrics-listen is not in this dossierd's --help yet; "
              "not checked")
        continue
    check(flag in known, f"--{flag} exists in dossierd --help")
for name, cm in configmaps.items():
    for key in cm.get("data", {}):
        path = None
        for v in volumes.values():
            if v.get("configMap", {}).get("name") == name and v["name"] in mounts:
                path = os.path.join(mounts[v["name"]]["mountPath"], key)
        check(path and (path in args or any(a.endswith("=" + path) for a in args)),
              f"ConfigMap {name}/{key} is mounted and passed to dossierd", path)

# --- The Containerfile agrees. ------------------------------------------------
with open(CONTAINERFILE) as f:
    cf = f.read().replace("\\\n", " ")
final = cf[cf.rfind("\nFROM "):]
entry = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", final, re.M)
entry = json.loads(entry.group(1)) if entry else None
exec_bin = re.search(r"^\s*exec\s+(\S+)", script, re.M)
check(entry == ["dossierd"], "Containerfile ENTRYPOINT is [\"dossierd\"]", entry)
check(c["command"][:2] == ["/bin/sh", "-ec"] and exec_bin
      and entry and exec_bin.group(1) == entry[0],
      "the pod's entrypoint script execs the image's ENTRYPOINT binary")
expose = {int(p.split("/")[0]) for m in re.findall(r"^EXPOSE\s+(.*)$", final, re.M)
          for p in m.split()}
check(expose == set(cports.values()) == hs_ports,
      "Containerfile EXPOSE = container ports = headless Service ports",
      (expose, cports, hs_ports))
user = re.search(r"^USER\s+(\d+):(\d+)\s*$", final, re.M)
check(user and (int(user.group(1)), int(user.group(2)))
      == (psc.get("runAsUser"), psc.get("runAsGroup")),
      "Containerfile USER uid:gid = runAsUser:runAsGroup",
      user.group(0) if user else None)
vol = re.search(r"^VOLUME\s+(\S+)\s*$", final, re.M)
check(vol and vol.group(1) == data_mount, "Containerfile VOLUME = data mount")
check(re.search(r"^FROM debian:12 AS \w+", cf, re.M) and
      re.search(r"^RUN tools/deps.sh", cf, re.M),
      "the build stage is debian:12 and runs tools/deps.sh")

# --- The pods' entrypoint, run for real on loopback. --------------------------
if failures:
    print(f"{failures} failure(s) before the run; not starting nodes")
    sys.exit(1)


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def health(addr):
    """grpc.health.v1.Health/Check for service "": SERVING, NOT_SERVING,
    UNIMPLEMENTED or the error code, sent by an independent client."""
    import grpc
    with grpc.insecure_channel(addr) as ch:
        call = ch.unary_unary("/grpc.health.v1.Health/Check",
                              request_serializer=None,
                              response_deserializer=None)
        try:
            resp = call(b"", timeout=2)
        except grpc.RpcError as e:
            return e.code().name
    return {b"\x08\x01": "SERVING", b"\x08\x02": "NOT_SERVING"}.get(resp, repr(resp))


N = replicas + 1  # the initial members and one pod of a scale-up
grpc_ports = free_ports(N)
with tempfile.TemporaryDirectory(prefix="dossier-manifests-") as work:
    procs = []

    def pod_command(i, principals_extra):
        """The container's command and args for pod i, with Kubernetes'
        expansion done and only addresses and paths moved."""
        env = {"POD_NAME": f"{sts_name}-{i}", "POD_NAMESPACE": NS}
        root = os.path.join(work, f"pod{i}")
        moves = [(f"{sts_name}-{j}.{svc_name}.{NS}.svc.cluster.local:7700",
                  f"127.0.0.1:{grpc_ports[j]}") for j in range(N)]
        moves += [("0.0.0.0:7700", f"127.0.0.1:{grpc_ports[i]}"),
                  ("0.0.0.0:9700", "127.0.0.1:0")]
        for name, v in volumes.items():
            if name in mounts:
                moves.append((mounts[name]["mountPath"], os.path.join(root, name)))
        for name in vcts:
            if name in mounts:
                moves.append((mounts[name]["mountPath"], os.path.join(root, name)))
        cmd = [k8s_expand(a, env) for a in c["command"] + c.get("args", [])]
        for old, new in moves:
            cmd = [a.replace(old, new) for a in cmd]
        # What Kubernetes would have mounted.
        for name, v in volumes.items():
            d = os.path.join(root, name)
            os.makedirs(d, exist_ok=True)
            if "secret" in v:
                path = os.path.join(d, "master.key")
                with open(path, "w") as f, open(key_file) as k:
                    f.write(k.read())
                os.chmod(path, 0o440)  # kubelet with fsGroup: 0440
            elif "configMap" in v:
                for key, text in configmaps[v["configMap"]["name"]]["data"].items():
                    with open(os.path.join(d, key), "w") as f:
                        f.write(text + (principals_extra if key == "principals" else ""))
        for name in vcts:
            os.makedirs(os.path.join(root, name), exist_ok=True)
        left = [a for a in cmd if re.search(
            r"svc\.cluster\.local|0\.0\.0\.0|/etc/dossier|/var/lib|/run/dossier", a)]
        check(not left, f"pod {i}: every address and path was moved", left)
        penv = {"PATH": os.path.dirname(DOSSIERD) + ":/usr/bin:/bin"}
        penv.update(env)
        return cmd, penv

    def start(i, extra):
        cmd, env = pod_command(i, extra)
        log = open(os.path.join(work, f"pod{i}.log"), "w")
        p = subprocess.Popen(cmd, env=env, stderr=log, stdout=log)
        procs.append(p)
        return p

    def cli(*a):
        return subprocess.run([DOSSIER, "--token-file", token_file, *a],
                              capture_output=True, text=True)

    def log_of(i):
        with open(os.path.join(work, f"pod{i}.log")) as f:
            return f.read()[-3000:]

    key_file = os.path.join(work, "master.key")
    token_file = os.path.join(work, "token")
    subprocess.run([DOSSIER, "keygen", key_file], check=True,
                   stderr=subprocess.DEVNULL)
    tok = json.loads(subprocess.run([DOSSIER, "token", "new", "test-admin", "admin"],
                                    check=True, capture_output=True,
                                    text=True).stdout)
    with open(token_file, "w") as f:
        f.write(tok["token"] + "\n")
    try:
        # As shipped the ConfigMap lists no principal: fail closed.
        p = start(0, "")
        try:
            rc = p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            rc = None
        check(rc not in (None, 0) and "principal" in log_of(0),
              "with the ConfigMap's principals as shipped (none), the node "
              "refuses to start and says why", log_of(0))
        if rc is None:
            p.kill()
            p.wait()
        procs.clear()
        for name in os.listdir(work):
            if name.startswith("pod"):
                subprocess.run(["rm", "-rf", os.path.join(work, name)])

        extra = tok["auth_line"] + "\n"
        for i in range(replicas):
            start(i, extra)
        targets = ",".join(f"127.0.0.1:{grpc_ports[i]}" for i in range(replicas))
        status, deadline = None, time.time() + 30
        while time.time() < deadline:
            r = cli("--target", targets, "--timeout", "2000", "cluster", "status")
            if r.returncode == 0:
                nodes = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
                if (sorted(n["role"] for n in nodes)
                        == ["follower"] * (replicas - 1) + ["leader"]
                        and all(n.get("keys_ready") for n in nodes)):
                    status = nodes
                    break
            time.sleep(0.2)
        if not check(status is not None, f"the {replicas} pods' entrypoints "
                     "start a cluster with one leader and ready keys",
                     (r.stdout, r.stderr, log_of(0))):
            sys.exit(1)
        check(all(len(n["members"]) == replicas and
                  {m["role"] for m in n["members"]} == {"voter"} for n in status),
              f"every node sees {replicas} voters")
        check([n["node_id"] for n in status] == list(range(1, replicas + 1)),
              "pod dossier-N is node N+1", [n["node_id"] for n in status])
        for i in range(replicas):
            st = os.stat(os.path.join(work, f"pod{i}", "run", "master.key"))
            check(st.st_mode & 0o777 == 0o400,
                  f"pod {i}: the key copy is mode 0400", oct(st.st_mode))
        answers = []
        deadline = time.time() + 10
        while time.time() < deadline:
            answers = [health(f"127.0.0.1:{grpc_ports[i]}") for i in range(replicas)]
            if all(a == "SERVING" for a in answers) or "UNIMPLEMENTED" in answers:
                break
            time.sleep(0.2)
        if "UNIMPLEMENTED" in answers:
            print("note: this dossierd has no grpc.health.v1.Health yet; the "
                  "probes were not exercised")
        else:
            check(answers == ["SERVING"] * replicas,
                  "grpc.health.v1.Health/Check \"\" answers SERVING on every "
                  "pod (what the readiness probe asks)", answers)

        # A scale-up: the next pod is no initial member, so it must wait.
        extra_pod = replicas
        p = start(extra_pod, extra)
        time.sleep(2)
        check(p.poll() is None, f"pod {extra_pod} (beyond --peers) starts and "
              "waits to be added instead of being refused", log_of(extra_pod))
        if "UNIMPLEMENTED" not in answers:
            check(health(f"127.0.0.1:{grpc_ports[extra_pod]}") == "NOT_SERVING",
                  f"pod {extra_pod} is NOT_SERVING before it is added")
        r = cli("--target", targets, "cluster", "add", str(extra_pod + 1),
                f"127.0.0.1:{grpc_ports[extra_pod]}")
        check(r.returncode == 0, f"dossier cluster add {extra_pod + 1}",
              r.stderr)
        ok, deadline = False, time.time() + 30
        while time.time() < deadline and not ok:
            r = cli("--target", f"127.0.0.1:{grpc_ports[extra_pod]}",
                    "--serializable", "cluster", "status")
            if r.returncode == 0:
                n = json.loads(r.stdout.splitlines()[0])
                ok = n.get("keys_ready") and n.get("leader_id")
            time.sleep(0.2)
        check(ok, f"pod {extra_pod}, once added, has the keys and knows the "
              "leader", log_of(extra_pod))

        # SIGTERM, as the kubelet sends after preStop.
        grace = pod.get("terminationGracePeriodSeconds", 30)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for i, p in enumerate(procs):
            try:
                rc = p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                rc = None
            check(rc == 0, f"pod {i} stops with status 0 on SIGTERM within "
                  f"{grace} s", log_of(i))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

print("all passed" if not failures else f"{failures} failure(s)")
sys.exit(1 if failures else 0)
