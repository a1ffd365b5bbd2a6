/*
 * at_secret.c: secret files and URI credentials (see at_secret.h).
 */
#include "at_secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MASK "***"

char *at_secret_read_file(const char *path, const char *who, at_err_t *err)
{
    if (path == NULL || path[0] == '\0') {
        at_err_set(err, AT_ERR_INVALID, "%s: expected a file path", who);
        return NULL;
    }
    /* O_NOFOLLOW is not used on purpose: Kubernetes Secret volumes are symbolic links. The
     * checks below are made on the opened file (fstat), so a swapped path cannot slip past. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        at_err_set(err, errno == ENOENT ? AT_ERR_NOT_FOUND : AT_ERR_IO, "%s: cannot open %.160s: %s", who, path,
                   strerror(errno));
        return NULL;
    }
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) != 0) {
        at_err_set(err, AT_ERR_IO, "%s: cannot stat %.160s: %s", who, path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        at_err_set(err, AT_ERR_INVALID, "%s: %.160s is not a regular file", who, path);
        goto fail;
    }
    if ((st.st_mode & S_IROTH) != 0) {
        at_err_set(err, AT_ERR_INVALID,
                   "%s: %.160s is readable by every user (mode %04o); make it 0600 or 0640 (chmod o-rwx)", who, path,
                   (unsigned)(st.st_mode & 07777));
        goto fail;
    }
    if (st.st_size > AT_SECRET_FILE_MAX) {
        at_err_set(err, AT_ERR_TOO_LARGE, "%s: %.160s is larger than %d bytes", who, path, AT_SECRET_FILE_MAX);
        goto fail;
    }
    /* One byte more than the limit detects a file that grew since fstat. */
    buf = malloc(AT_SECRET_FILE_MAX + 2);
    if (buf == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "%s: out of memory", who);
        goto fail;
    }
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, AT_SECRET_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            at_err_set(err, AT_ERR_IO, "%s: cannot read %.160s: %s", who, path, strerror(errno));
            goto fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > AT_SECRET_FILE_MAX) {
            at_err_set(err, AT_ERR_TOO_LARGE, "%s: %.160s is larger than %d bytes", who, path, AT_SECRET_FILE_MAX);
            goto fail;
        }
    }
    close(fd);
    fd = -1;
    buf[len] = '\0';
    if (memchr(buf, '\0', len) != NULL) {
        at_err_set(err, AT_ERR_INVALID, "%s: %.160s contains a NUL byte", who, path);
        goto fail;
    }
    /* `echo secret > file` and editors add a final newline that is not part of the value. */
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        buf[--len] = '\0';
    return buf;

fail:
    if (fd >= 0)
        close(fd);
    if (buf != NULL) {
        memset(buf, 0, AT_SECRET_FILE_MAX + 2);
        free(buf);
    }
    return NULL;
}

void at_secret_wipe(char *s)
{
    if (s == NULL)
        return;
    volatile char *p = s;
    while (*p != '\0')
        *p++ = '\0';
}

/* The userinfo of "scheme://userinfo@host...": sets [*ui, *at) and returns true when there
 * is one. The authority ends at the first '/', '?' or '#' after "://"; the last '@' before
 * that ends the userinfo (a password may contain an unescaped '@'). */
static bool find_userinfo(const char *uri, const char **ui, const char **at)
{
    const char *sep = strstr(uri, "://");
    if (sep == NULL)
        return false;
    const char *auth = sep + 3;
    size_t alen = strcspn(auth, "/?#");
    const char *last = NULL;
    for (size_t i = 0; i < alen; i++)
        if (auth[i] == '@')
            last = auth + i;
    if (last == NULL)
        return false;
    *ui = auth;
    *at = last;
    return true;
}

/* Query parameters whose values are credentials (compared without case). */
static bool secret_param(const char *name, size_t len)
{
    static const char *const names[] = {
        "password",           "tlsCertificateKeyFilePassword", "sslClientCertificateKeyPassword",
        "authMechanismProperties", "sasl.password",            "ssl.key.password",
        "token",
    };
    for (size_t i = 0; i < AT_ARRAY_LEN(names); i++)
        if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
            return true;
    return false;
}

typedef struct out_s {
    char *p;
    size_t len, cap;
} out_t;

static void out_put(out_t *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n && o->len + 1 < o->cap; i++)
        o->p[o->len++] = s[i];
    o->p[o->len] = '\0';
}

char *at_secret_uri_redact(const char *uri, char *out, size_t outlen)
{
    if (outlen == 0)
        return out;
    out_t o = {.p = out, .len = 0, .cap = outlen};
    out[0] = '\0';
    if (uri == NULL)
        return out;
    const char *ui, *at, *p = uri;
    if (find_userinfo(uri, &ui, &at)) {
        const char *colon = memchr(ui, ':', (size_t)(at - ui));
        if (colon != NULL) {
            out_put(&o, uri, (size_t)(colon + 1 - uri));
            out_put(&o, MASK, strlen(MASK));
            p = at;
        }
    }
    const char *q = strchr(p, '?');
    if (q == NULL) {
        out_put(&o, p, strlen(p));
        return out;
    }
    out_put(&o, p, (size_t)(q + 1 - p));
    /* name=value pairs separated by '&' (or ';', which MongoDB URIs also allow). */
    for (const char *s = q + 1; *s != '\0';) {
        size_t plen = strcspn(s, "&;#");
        const char *eq = memchr(s, '=', plen);
        if (eq != NULL && secret_param(s, (size_t)(eq - s))) {
            out_put(&o, s, (size_t)(eq + 1 - s));
            out_put(&o, MASK, strlen(MASK));
        } else {
            out_put(&o, s, plen);
        }
        s += plen;
        if (*s == '#') {
            out_put(&o, s, strlen(s));
            break;
        }
        if (*s != '\0')
            out_put(&o, s++, 1);
    }
    return out;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *at_secret_uri_password(const char *uri)
{
    const char *ui, *at;
    if (uri == NULL || !find_userinfo(uri, &ui, &at))
        return NULL;
    const char *colon = memchr(ui, ':', (size_t)(at - ui));
    if (colon == NULL || colon + 1 == at)
        return NULL;
    const char *s = colon + 1;
    size_t n = (size_t)(at - s);
    char *pw = malloc(n + 1);
    if (pw == NULL)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            pw[j++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            pw[j++] = s[i];
        }
    }
    pw[j] = '\0';
    return pw;
}
