/* Unit tests for common/at_kafka.c: the security options and the refused-credentials state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <unistd.h>

#include "at_kafka.h"
#include "at_log.h"

static char *get(rd_kafka_conf_t *c, const char *name, char *buf, size_t len)
{
    size_t n = len;
    assert_int_equal(rd_kafka_conf_get(c, name, buf, &n), RD_KAFKA_CONF_OK);
    return buf;
}

static void test_at_kafka_conf_new__plaintext_by_default(void **state)
{
    (void)state;
    at_err_t err = {0};
    char buf[256];
    at_kafka_sec_t sec = {0};
    rd_kafka_conf_t *c = at_kafka_conf_new("127.0.0.1:9092", &sec, NULL, NULL, &err);
    assert_non_null(c);
    assert_string_equal(get(c, "security.protocol", buf, sizeof(buf)), "plaintext");
    rd_kafka_conf_destroy(c);
}

static void test_at_kafka_conf_new__sasl_ssl(void **state)
{
    (void)state;
    at_err_t err = {0};
    char buf[256];
    at_kafka_sec_t sec = {.security_protocol = "SASL_SSL", .sasl_mechanism = "scram-sha-512",
                          .sasl_username = "app", .sasl_password = "pw-123456"};
    rd_kafka_conf_t *c = at_kafka_conf_new("127.0.0.1:9093", &sec, NULL, NULL, &err);
    assert_non_null(c);
    assert_string_equal(get(c, "security.protocol", buf, sizeof(buf)), "sasl_ssl");
    assert_string_equal(get(c, "sasl.mechanisms", buf, sizeof(buf)), "SCRAM-SHA-512");
    assert_string_equal(get(c, "sasl.username", buf, sizeof(buf)), "app");
    assert_string_equal(get(c, "ssl.endpoint.identification.algorithm", buf, sizeof(buf)), "https");
    rd_kafka_conf_destroy(c);
}

static void test_at_kafka_conf_new__contradictions_refused(void **state)
{
    (void)state;
    at_err_t err = {0};
    at_kafka_sec_t no_user = {.security_protocol = "sasl_ssl", .sasl_mechanism = "PLAIN", .sasl_password = "x"};
    assert_null(at_kafka_conf_new("h:1", &no_user, NULL, NULL, &err));
    assert_non_null(strstr(err.msg, "--kafka-sasl-username and --kafka-sasl-password"));
    at_kafka_sec_t no_mech = {.security_protocol = "sasl_ssl", .sasl_username = "u", .sasl_password = "x"};
    assert_null(at_kafka_conf_new("h:1", &no_mech, NULL, NULL, &err));
    assert_non_null(strstr(err.msg, "--kafka-sasl-mechanism"));
    at_kafka_sec_t sasl_plain = {.security_protocol = "plaintext", .sasl_username = "u"};
    assert_null(at_kafka_conf_new("h:1", &sasl_plain, NULL, NULL, &err));
    assert_non_null(strstr(err.msg, "need --kafka-security-protocol sasl_ssl"));
    at_kafka_sec_t ca_plain = {.security_protocol = "sasl_plaintext", .ssl_ca = "/ca.pem"};
    assert_null(at_kafka_conf_new("h:1", &ca_plain, NULL, NULL, &err));
    assert_non_null(strstr(err.msg, "--kafka-ssl-*"));
    at_kafka_sec_t half_cert = {.security_protocol = "ssl", .ssl_cert = "/c.pem"};
    assert_null(at_kafka_conf_new("h:1", &half_cert, NULL, NULL, &err));
    assert_non_null(strstr(err.msg, "--kafka-ssl-cert and --kafka-ssl-key"));
    at_kafka_sec_t bad = {.security_protocol = "tls"};
    assert_null(at_kafka_conf_new("h:1", &bad, NULL, NULL, &err));
    assert_non_null(strstr(err.msg, "expected plaintext, ssl, sasl_plaintext or sasl_ssl"));
}

static void test_at_kafka_conf_new__secret_props_refused(void **state)
{
    (void)state;
    at_err_t err = {0};
    char *items[] = {"compression.type=lz4", "sasl.password=hunter2-secret"};
    const at_conf_list_t props = {items, 2};
    assert_null(at_kafka_conf_new("h:1", NULL, NULL, &props, &err));
    assert_non_null(strstr(err.msg, "--kafka-prop sasl.password: a secret; use --kafka-sasl-password-file"));
    assert_null(strstr(err.msg, "hunter2"));
    const at_conf_list_t ok = {items, 1};
    rd_kafka_conf_t *c = at_kafka_conf_new("h:1", NULL, NULL, &ok, &err);
    assert_non_null(c);
    rd_kafka_conf_destroy(c);
}

static void test_at_kafka_auth_failed__set_by_refusals_cleared_by_success(void **state)
{
    (void)state;
    char why[200];
    assert_false(at_kafka_auth_failed(why, sizeof(why)));
    at_kafka_log_client_error("t", RD_KAFKA_RESP_ERR__TRANSPORT, "connection refused");
    assert_false(at_kafka_auth_failed(NULL, 0));
    at_kafka_log_client_error("t", RD_KAFKA_RESP_ERR__AUTHENTICATION,
                              "SASL authentication error: Authentication failed during authentication");
    assert_true(at_kafka_auth_failed(why, sizeof(why)));
    assert_non_null(strstr(why, "Authentication failed"));
    at_kafka_note_ok();
    assert_false(at_kafka_auth_failed(NULL, 0));
    /* TLS failures reported as transport errors count too. */
    at_kafka_log_client_error("t", RD_KAFKA_RESP_ERR__TRANSPORT, "SSL handshake failed: certificate verify failed");
    assert_true(at_kafka_auth_failed(NULL, 0));
    at_kafka_note_ok();
}

int main(void)
{
    /* The refusals are logged at error level: keep them out of the test output. */
    at_log_set_fd(open("/dev/null", O_WRONLY | O_CLOEXEC));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_at_kafka_conf_new__plaintext_by_default),
        cmocka_unit_test(test_at_kafka_conf_new__sasl_ssl),
        cmocka_unit_test(test_at_kafka_conf_new__contradictions_refused),
        cmocka_unit_test(test_at_kafka_conf_new__secret_props_refused),
        cmocka_unit_test(test_at_kafka_auth_failed__set_by_refusals_cleared_by_success),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
