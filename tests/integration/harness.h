/* Integration test harness: starts real dossierd processes on loopback
 * ports with their own temporary data directory and key file, waits until
 * they serve, and stops every process it started, by PID, when a test ends
 * or the test program exits. */
#ifndef DOSSIER_TESTS_HARNESS_H
#define DOSSIER_TESTS_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

#include <dossier/dossier.h>

struct node_proc {
    pid_t pid;          /* 0 when not running */
    char addr[64];      /* 127.0.0.1:PORT once serving */
    char dir[256];      /* the test's temporary directory */
    char data[320];     /* dir/data: the data directory */
    char key[320];      /* dir/master.key */
    char log[320];      /* dir/node.log: stderr of the node */
    char ready[320];    /* dir/ready */
};

/* Makes a temporary directory and a master key for @n, without starting
 * anything. Aborts the test program on failure. */
void node_init(struct node_proc *n);

/* Starts dossierd for @n with its data directory and key, plus the extra
 * arguments @extra (NULL-terminated, may be NULL), on a free loopback port,
 * and waits until it serves. Returns 0, or -1 when the process exited or
 * did not get ready within 20 s (its log is printed). */
int node_start(struct node_proc *n, const char *const *extra);

/* Runs dossierd for @n with exactly @args after the program name
 * (NULL-terminated) and waits for it to exit within 20 s; returns its exit
 * status (or -1) and puts what it wrote on stderr into @err (@cap bytes). */
int node_run_to_exit(struct node_proc *n, const char *const *args, char *err,
                     size_t cap);

/* SIGTERM, then waits for the exit; returns the exit status (or -1). */
int node_stop(struct node_proc *n);

/* SIGKILL and reaps the process. */
void node_kill9(struct node_proc *n);

/* Stops @n if running and removes its temporary directory. */
void node_destroy(struct node_proc *n);

/* A client for @n (aborts on failure); close with dossier_client_close. */
struct dossier_client *node_client(const struct node_proc *n);

/* Number of processes the harness started and has not reaped. */
int harness_running(void);

/* Runs a command line through /bin/sh, capturing stdout into @out (@cap
 * bytes, NUL-terminated; may be NULL); returns the exit status. */
int harness_sh(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Recursively removes @path. */
void harness_rmtree(const char *path);

#endif
