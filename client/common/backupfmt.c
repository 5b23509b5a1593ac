/* Hashing backup files (see backupfmt.h). */
#include "backupfmt.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <sodium.h>

int backup_hash_file(const char *path, uint8_t out[32], uint64_t *size)
{
    crypto_hash_sha256_state h;
    unsigned char buf[1 << 16];
    ssize_t k;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    *size = 0;
    crypto_hash_sha256_init(&h);
    while ((k = read(fd, buf, sizeof(buf))) != 0) {
        if (k < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        crypto_hash_sha256_update(&h, buf, (unsigned long long)k);
        *size += (uint64_t)k;
    }
    close(fd);
    crypto_hash_sha256_final(&h, out);
    return 0;
}
