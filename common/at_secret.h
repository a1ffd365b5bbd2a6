/*
 * at_secret.h: handling of secret values (tokens, keys, passwords, URIs with credentials):
 * reading them from files, finding and masking the password of a URI. See docs/SECURITY.md.
 *
 * The rule the services follow: a secret never needs to be on a command line (every option
 * marked secret in a config table also reads from `--NAME-file PATH` or `ADTRACK_NAME_FILE`,
 * see at_conf.h), and is never written to a log or /metrics (addresses are logged through
 * at_secret_uri_redact(), and at_log masks every registered secret as a second line of
 * defence, see at_log_add_secret()).
 */
#ifndef AT_SECRET_H
#define AT_SECRET_H

#include "at_err.h"

/* Largest secret file read (a list of tokens, a URI); a larger file is refused. */
#define AT_SECRET_FILE_MAX 65536

/*
 * Reads the secret file @p path for @p who (the option, for messages). The file must be a
 * regular file (symbolic links are followed: Kubernetes mounts Secrets that way), at most
 * AT_SECRET_FILE_MAX bytes, and not readable by "others" (mode o+r is refused: a secret that
 * every user of the machine can read is no secret; 0600 or 0640 are fine). Trailing newlines
 * (LF or CRLF) are removed. A NUL byte is refused. Returns a new NUL-terminated string the
 * caller frees (after wiping it with at_secret_wipe when it can), or NULL with @p err.
 * The message never quotes the content.
 */
char *at_secret_read_file(const char *path, const char *who, at_err_t *err);

/* Overwrites @p s with zeros up to its terminating NUL (through a volatile pointer, so the
 * compiler keeps the stores). Accepts NULL. */
void at_secret_wipe(char *s);

/*
 * Copies @p uri to @p out with the password of its userinfo replaced by "***":
 * "mongodb://app:s3cret@h1,h2/?tls=true" -> "mongodb://app:***@h1,h2/?tls=true",
 * "redis://:pw@host:6379/0" -> "redis://:***@host:6379/0". Also masks the values of query
 * parameters that carry secrets (password, tlsCertificateKeyFilePassword, sasl.password,
 * ...). Text that is not a URI (HOST:PORT) is copied unchanged. Always NUL-terminates;
 * truncates to @p outlen. Returns @p out, so it can be used inline in at_log() arguments.
 */
char *at_secret_uri_redact(const char *uri, char *out, size_t outlen);

/*
 * The password in @p uri's userinfo ("scheme://user:PASSWORD@..."), percent-decoded, as a
 * new string the caller frees; NULL when there is none (or out of memory). Used to register
 * it with at_log_add_secret() and to tell whether a command-line URI carries a credential.
 */
char *at_secret_uri_password(const char *uri);

#endif
