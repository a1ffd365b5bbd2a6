/*
 * at_fs.c: filesystem helpers (see at_fs.h).
 */
#include "at_fs.h"

#include <errno.h>
#include <sys/stat.h>

int at_mkdir_p(const char *dir, mode_t mode, char *failed, size_t failedlen)
{
    char path[4096];
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof(path)) {
        errno = len == 0 ? EINVAL : ENAMETOOLONG;
        return -1;
    }
    memcpy(path, dir, len + 1);
    /* Each prefix ending at a '/' (and the whole path) in turn; the leading '/' is skipped. */
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char c = path[i];
        path[i] = '\0';
        if (mkdir(path, mode) != 0 && errno != EEXIST) {
            int saved = errno;
            if (failed != NULL && failedlen > 0)
                snprintf(failed, failedlen, "%s", path);
            errno = saved;
            return -1;
        }
        path[i] = c;
    }
    return 0;
}
