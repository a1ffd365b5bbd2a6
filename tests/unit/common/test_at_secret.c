/* Unit tests for common/at_secret.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "at_secret.h"

/* Writes @p content to a fresh file with @p mode; returns its path (static buffer). */
static const char *write_file(const char *content, size_t len, mode_t mode)
{
    static char path[128];
    snprintf(path, sizeof(path), "/tmp/at_secret_test.XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
    return path;
}

static void test_at_secret_read_file__strips_trailing_newlines(void **state)
{
    (void)state;
    at_err_t err = {0};
    const char *p = write_file("s3cret\r\n\n", 9, 0600);
    char *v = at_secret_read_file(p, "--x-file", &err);
    unlink(p);
    assert_non_null(v);
    assert_string_equal(v, "s3cret");
    free(v);
}

static void test_at_secret_read_file__group_readable_ok(void **state)
{
    (void)state;
    at_err_t err = {0};
    const char *p = write_file("tok", 3, 0640);
    char *v = at_secret_read_file(p, "--x-file", &err);
    unlink(p);
    assert_non_null(v);
    assert_string_equal(v, "tok");
    free(v);
}

static void test_at_secret_read_file__world_readable_refused(void **state)
{
    (void)state;
    at_err_t err = {0};
    const char *p = write_file("tok-value", 9, 0644);
    char *v = at_secret_read_file(p, "--x-file", &err);
    unlink(p);
    assert_null(v);
    assert_non_null(strstr(err.msg, "--x-file"));
    assert_non_null(strstr(err.msg, "readable by every user"));
    assert_non_null(strstr(err.msg, "0644"));
    assert_null(strstr(err.msg, "tok-value"));
}

static void test_at_secret_read_file__missing_and_directory(void **state)
{
    (void)state;
    at_err_t err = {0};
    assert_null(at_secret_read_file("/nonexistent/at-secret", "--x-file", &err));
    assert_int_equal(err.code, AT_ERR_NOT_FOUND);
    assert_null(at_secret_read_file("/tmp", "--x-file", &err));
    assert_non_null(strstr(err.msg, "not a regular file"));
    assert_null(at_secret_read_file("", "--x-file", &err));
}

static void test_at_secret_read_file__nul_and_size_refused(void **state)
{
    (void)state;
    at_err_t err = {0};
    const char *p = write_file("a\0b", 3, 0600);
    assert_null(at_secret_read_file(p, "--x-file", &err));
    assert_non_null(strstr(err.msg, "NUL"));
    unlink(p);
    char *big = calloc(1, AT_SECRET_FILE_MAX + 10);
    memset(big, 'a', AT_SECRET_FILE_MAX + 9);
    p = write_file(big, AT_SECRET_FILE_MAX + 9, 0600);
    free(big);
    assert_null(at_secret_read_file(p, "--x-file", &err));
    assert_int_equal(err.code, AT_ERR_TOO_LARGE);
    unlink(p);
}

static void test_at_secret_uri_redact__userinfo_and_params(void **state)
{
    (void)state;
    char out[256];
    assert_string_equal(at_secret_uri_redact("mongodb://app:s3cret@h1:27017,h2/?tls=true", out, sizeof(out)),
                        "mongodb://app:***@h1:27017,h2/?tls=true");
    assert_string_equal(at_secret_uri_redact("redis://:pw@host:6379/2", out, sizeof(out)), "redis://:***@host:6379/2");
    /* An '@' inside the password: the last one before the host ends the userinfo. */
    assert_string_equal(at_secret_uri_redact("redis://u:p@ss@host:1", out, sizeof(out)), "redis://u:***@host:1");
    assert_string_equal(at_secret_uri_redact("redis://user@host:1", out, sizeof(out)), "redis://user@host:1");
    assert_string_equal(at_secret_uri_redact("127.0.0.1:6379", out, sizeof(out)), "127.0.0.1:6379");
    assert_string_equal(
        at_secret_uri_redact("mongodb://h/?tls=true&tlsCertificateKeyFilePassword=kp&w=1", out, sizeof(out)),
        "mongodb://h/?tls=true&tlsCertificateKeyFilePassword=***&w=1");
    assert_string_equal(at_secret_uri_redact("mongodb://h/db?authMechanismProperties=AWS_SESSION_TOKEN:abc", out,
                                             sizeof(out)),
                        "mongodb://h/db?authMechanismProperties=***");
    /* Truncation keeps the string terminated and never shows more than the prefix. */
    char small[12];
    at_secret_uri_redact("mongodb://a:verysecret@h", small, sizeof(small));
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_null(strstr(small, "very"));
}

static void test_at_secret_uri_password__decoded(void **state)
{
    (void)state;
    char *pw = at_secret_uri_password("mongodb://app:p%40ss%3Aw@h/");
    assert_non_null(pw);
    assert_string_equal(pw, "p@ss:w");
    free(pw);
    assert_null(at_secret_uri_password("mongodb://h/"));
    assert_null(at_secret_uri_password("redis://user@h:1"));
    assert_null(at_secret_uri_password("redis://user:@h:1"));
    assert_null(at_secret_uri_password("h:6379"));
    pw = at_secret_uri_password("redis://:only%2@h:1");
    assert_string_equal(pw, "only%2");
    free(pw);
}

static void test_at_secret_wipe__zeroes(void **state)
{
    (void)state;
    char s[] = "secret";
    at_secret_wipe(s);
    for (size_t i = 0; i < sizeof(s); i++)
        assert_int_equal(s[i], 0);
    at_secret_wipe(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_at_secret_read_file__strips_trailing_newlines),
        cmocka_unit_test(test_at_secret_read_file__group_readable_ok),
        cmocka_unit_test(test_at_secret_read_file__world_readable_refused),
        cmocka_unit_test(test_at_secret_read_file__missing_and_directory),
        cmocka_unit_test(test_at_secret_read_file__nul_and_size_refused),
        cmocka_unit_test(test_at_secret_uri_redact__userinfo_and_params),
        cmocka_unit_test(test_at_secret_uri_password__decoded),
        cmocka_unit_test(test_at_secret_wipe__zeroes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
