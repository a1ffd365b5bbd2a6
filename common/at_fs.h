/*
 * at_fs.h: small filesystem helpers shared by the services' local stores (the collector's
 * spool, the enricher's file sink, coredata's file store).
 */
#ifndef AT_FS_H
#define AT_FS_H

#include <sys/types.h>
#include "at_common.h"

/*
 * Creates @p dir and any missing parents with @p mode, like `mkdir -p`; existing
 * directories are fine. Returns 0, or -1 with errno set (ENAMETOOLONG for a path of 4096
 * bytes or more, EINVAL for an empty one); when @p failed is not NULL, the path prefix that
 * could not be created is copied there (at most @p failedlen bytes, NUL-terminated).
 */
int at_mkdir_p(const char *dir, mode_t mode, char *failed, size_t failedlen);

#endif
