/* Unit tests for common/at_conf.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "at_conf.h"

typedef struct tconf_s {
    int64_t threads;
    int64_t offset;
    bool verbose;
    char *name;
    char *listen_addr;
    at_conf_list_t brokers;
} tconf_t;

static const at_conf_opt_t opts[] = {
    {"threads", AT_CONF_INT, AT_OFF(tconf_t, threads), 1, 64, "4", "Worker threads"},
    {"offset", AT_CONF_INT, AT_OFF(tconf_t, offset), -100, 100, "-5", "Clock offset"},
    {"verbose", AT_CONF_BOOL, AT_OFF(tconf_t, verbose), 0, 0, "false", "Chatty output"},
    {"name", AT_CONF_STR, AT_OFF(tconf_t, name), 0, 8, "col", "Instance name"},
    {"listen-addr", AT_CONF_STR, AT_OFF(tconf_t, listen_addr), 0, 0, NULL, "Address to listen on"},
    {"brokers", AT_CONF_LIST, AT_OFF(tconf_t, brokers), 0, 3, "k1:9092,k2:9092", "Kafka brokers | bootstrap"},
};

static const at_conf_table_t table = {
    .program = "test-prog",
    .summary = "A program used by the unit tests.",
    .opts = opts,
    .nopts = AT_ARRAY_LEN(opts),
};

/* Loads with argv given as a NULL-terminated list after the program name. */
static int load(tconf_t *c, char **envp, at_err_t *err, char **args)
{
    char *argv[32] = {"test-prog"};
    int argc = 1;
    for (; args != NULL && args[argc - 1] != NULL; argc++)
        argv[argc] = args[argc - 1];
    memset(c, 0, sizeof(*c));
    at_err_clear(err);
    return at_conf_load(&table, c, argc, argv, envp, stdout, err);
}

#define ARGS(...) ((char *[]){__VA_ARGS__, NULL})
#define ENV(...) ((char *[]){__VA_ARGS__, NULL})

static void test_at_conf_load__defaults(void **state)
{
    (void)state;
    tconf_t c;
    at_err_t err;
    assert_int_equal(load(&c, NULL, &err, NULL), 0);
    assert_int_equal(c.threads, 4);
    assert_int_equal(c.offset, -5);
    assert_false(c.verbose);
    assert_string_equal(c.name, "col");
    assert_non_null(c.listen_addr); /* NULL default means empty string, never a NULL pointer */
    assert_string_equal(c.listen_addr, "");
    assert_int_equal(c.brokers.count, 2);
    assert_string_equal(c.brokers.items[0], "k1:9092");
    assert_string_equal(c.brokers.items[1], "k2:9092");
    at_conf_free(&table, &c);
}

static void test_at_conf_load__env_overrides_default(void **state)
{
    (void)state;
    tconf_t c;
    at_err_t err;
    char **env = ENV("PATH=/bin", "ADTRACK_THREADS=8", "ADTRACK_LISTEN_ADDR=0.0.0.0:80", "ADTRACK_VERBOSE=yes",
                     "ADTRACK_BROKERS=a:1,b:2,c:3", "ADTRACK_UNRELATED=1", "XADTRACK_NAME=zz");
    assert_int_equal(load(&c, env, &err, NULL), 0);
    assert_int_equal(c.threads, 8);
    assert_string_equal(c.listen_addr, "0.0.0.0:80");
    assert_true(c.verbose);
    assert_string_equal(c.name, "col");
    assert_int_equal(c.brokers.count, 3);
    assert_string_equal(c.brokers.items[2], "c:3");
    at_conf_free(&table, &c);
}

static void test_at_conf_load__argv_overrides_env(void **state)
{
    (void)state;
    tconf_t c;
    at_err_t err;
    char **env = ENV("ADTRACK_THREADS=8", "ADTRACK_NAME=envname");
    assert_int_equal(load(&c, env, &err, ARGS("--threads", "16")), 0);
    assert_int_equal(c.threads, 16);
    assert_string_equal(c.name, "envname");
    at_conf_free(&table, &c);
}

static void test_at_conf_load__equals_form_and_last_wins(void **state)
{
    (void)state;
    tconf_t c;
    at_err_t err;
    assert_int_equal(load(&c, NULL, &err, ARGS("--threads=2", "--name=a=b", "--threads", "3", "--listen-addr=")), 0);
    assert_int_equal(c.threads, 3);
    assert_string_equal(c.name, "a=b");
    assert_string_equal(c.listen_addr, "");
    at_conf_free(&table, &c);
}

static void test_at_conf_load__negative_int(void **state)
{
    (void)state;
    tconf_t c;
    at_err_t err;
    assert_int_equal(load(&c, NULL, &err, ARGS("--offset", "-100")), 0);
    assert_int_equal(c.offset, -100);
    at_conf_free(&table, &c);
}

static void test_at_conf_load__int_rejects_bad_values(void **state)
{
    (void)state;
    static const char *bad[] = {
        "0", "65", "-1", "abc", "4x", " 4", "+4", "", "0x10", "4.0", "99999999999999999999", "-99999999999999999999"};
    for (size_t i = 0; i < AT_ARRAY_LEN(bad); i++) {
        tconf_t c;
        at_err_t err;
        char expect[128];
        assert_int_equal(load(&c, NULL, &err, ARGS("--threads", (char *)bad[i])), -1);
        snprintf(expect, sizeof(expect), "--threads: expected an integer from 1 to 64, got '%s'", bad[i]);
        assert_string_equal(err.msg, expect);
        assert_true(err.code == AT_ERR_RANGE || err.code == AT_ERR_INVALID);
        /* A failed load leaves nothing allocated in the struct. */
        assert_null(c.name);
        assert_null(c.brokers.items);
    }
}

static void test_at_conf_load__env_error_names_variable(void **state)
{
    (void)state;
    tconf_t c;
    at_err_t err;
    assert_int_equal(load(&c, ENV("ADTRACK_THREADS=0"), &err, NULL), -1);
    assert_string_equal(err.msg, "ADTRACK_THREADS (--threads): expected an integer from 1 to 64, got '0'");
    assert_int_equal(err.code, AT_ERR_RANGE);
}

static void test_at_conf_load__bool_forms(void **state)
{
    (void)state;
    static const char *yes[] = {"true", "1", "yes", "on", "TRUE", "On"};
    static const char *no[] = {"false", "0", "no", "off", "False"};
    tconf_t c;
    at_err_t err;
    for (size_t i = 0; i < AT_ARRAY_LEN(yes); i++) {
        assert_int_equal(load(&c, NULL, &err, ARGS("--verbose", (char *)yes[i])), 0);
        assert_true(c.verbose);
        at_conf_free(&table, &c);
    }
    for (size_t i = 0; i < AT_ARRAY_LEN(no); i++) {
        assert_int_equal(load(&c, ENV("ADTRACK_VERBOSE=1"), &err, ARGS("--verbose", (char *)no[i])), 0);
        assert_false(c.verbose);
        at_conf_free(&table, &c);
    }
}

static void test_at_conf_load__bool_rejects_other(void **state)
{
    (void)state;
    tconf_t c;
    at_err_t err;
    assert_int_equal(load(&c, NULL, &err, ARGS("--verbose", "maybe")), -1);
    assert_string_equal(err.msg, "--verbose: expected true/false/1/0/yes/no/on/off, got 'maybe'");
}

static void test_at_conf_load__str_max_length(void **state)
{
    (void)state;
    tconf_t c;
    at_err_t err;
    assert_int_equal(load(&c, NULL, &err, ARGS("--name", "12345678")), 0);
    assert_string_equal(c.name, "12345678");
    at_conf_free(&table, &c);
    assert_int_equal(load(&c, NULL, &err, ARGS("--name", "123456789")), -1);
    assert_non_null(strstr(err.msg, "--name: expected at most 8 bytes"));
    assert_int_equal(err.code, AT_ERR_TOO_LARGE);
    /* String values are not echoed: they may be secrets. */
    assert_null(strstr(err.msg, "123456789"));
}

static void test_at_conf_load__list_argv_repeatable_and_replaces_env(void **state)
{
    (void)state;
    tconf_t c;
    at_err_t err;
    assert_int_equal(load(&c, ENV("ADTRACK_BROKERS=e1,e2"), &err, ARGS("--brokers", "x:1", "--brokers=y,z")), 0);
    assert_int_equal(c.brokers.count, 2);
    assert_string_equal(c.brokers.items[0], "x:1");
    assert_string_equal(c.brokers.items[1], "y,z"); /* argv values are taken verbatim */
    at_conf_free(&table, &c);
    assert_null(c.brokers.items);
    assert_int_equal(c.brokers.count, 0);
}

static void test_at_conf_load__list_env_empty_clears_default(void **state)
{
    (void)state;
    tconf_t c;
    at_err_t err;
    assert_int_equal(load(&c, ENV("ADTRACK_BROKERS="), &err, NULL), 0);
    assert_int_equal(c.brokers.count, 0);
    at_conf_free(&table, &c);
}

static void test_at_conf_load__list_limits(void **state)
{
    (void)state;
    tconf_t c;
    at_err_t err;
    assert_int_equal(load(&c, NULL, &err, ARGS("--brokers", "a", "--brokers", "b", "--brokers", "c", "--brokers", "d")),
                     -1);
    assert_non_null(strstr(err.msg, "--brokers: expected at most 3 values"));
    assert_int_equal(load(&c, ENV("ADTRACK_BROKERS=a,b,c,d"), &err, NULL), -1);
    assert_non_null(strstr(err.msg, "ADTRACK_BROKERS (--brokers): expected at most 3"));
    assert_int_equal(load(&c, ENV("ADTRACK_BROKERS=a,,b"), &err, NULL), -1);
    assert_non_null(
        strstr(err.msg, "ADTRACK_BROKERS (--brokers): expected a comma-separated list without empty items"));
    assert_int_equal(load(&c, NULL, &err, ARGS("--brokers", "")), -1);
    assert_non_null(strstr(err.msg, "--brokers: expected a non-empty value"));
}

static void test_at_conf_load__unknown_option(void **state)
{
    (void)state;
    tconf_t c;
    at_err_t err;
    assert_int_equal(load(&c, NULL, &err, ARGS("--foo", "1")), -1);
    assert_string_equal(err.msg, "unknown option '--foo' (see --help)");
    assert_int_equal(load(&c, NULL, &err, ARGS("--foo=1")), -1);
    assert_string_equal(err.msg, "unknown option '--foo' (see --help)");
    assert_int_equal(load(&c, NULL, &err, ARGS("--threads", "2", "stray")), -1);
    assert_string_equal(err.msg, "unknown option 'stray' (see --help)");
    assert_int_equal(load(&c, NULL, &err, ARGS("-t", "2")), -1);
    assert_string_equal(err.msg, "unknown option '-t' (see --help)");
}

static void test_at_conf_load__missing_value(void **state)
{
    (void)state;
    tconf_t c;
    at_err_t err;
    assert_int_equal(load(&c, NULL, &err, ARGS("--threads")), -1);
    assert_string_equal(err.msg, "--threads: missing value");
    assert_int_equal(load(&c, NULL, &err, ARGS("--name", "--threads", "3")), -1);
    assert_string_equal(err.msg, "--name: missing value");
}

static char *capture_load(tconf_t *c, char *flag, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    char *argv[] = {"test-prog", "--threads", "0", flag, NULL};
    at_err_t err;
    memset(c, 0, sizeof(*c));
    *rc = at_conf_load(&table, c, 4, argv, NULL, out, &err);
    fclose(out);
    return buf;
}

static void test_at_conf_load__help(void **state)
{
    (void)state;
    tconf_t c;
    int rc;
    /* --help wins even over an invalid value earlier on the line. */
    char *text = capture_load(&c, "--help", &rc);
    assert_int_equal(rc, AT_CONF_EXIT_HELP);
    assert_non_null(strstr(text, "test-prog"));
    assert_non_null(strstr(text, "A program used by the unit tests."));
    static const char *expect[] = {
        "--threads",       "ADTRACK_THREADS", "--offset",       "ADTRACK_OFFSET", "--verbose",
        "ADTRACK_VERBOSE", "--name",          "ADTRACK_NAME",   "--listen-addr",  "ADTRACK_LISTEN_ADDR",
        "--brokers",       "ADTRACK_BROKERS", "Worker threads", "1..64",          "-100..100",
        "Default: 4",      "at most 8 bytes", "--help-markdown"};
    for (size_t i = 0; i < AT_ARRAY_LEN(expect); i++) {
        if (strstr(text, expect[i]) == NULL)
            fail_msg("help lacks '%s':\n%s", expect[i], text);
    }
    assert_null(c.name); /* nothing was loaded */
    free(text);
}

static void test_at_conf_load__help_markdown(void **state)
{
    (void)state;
    tconf_t c;
    int rc;
    char *text = capture_load(&c, "--help-markdown", &rc);
    assert_int_equal(rc, AT_CONF_EXIT_HELP);
    static const char head[] = "## test-prog\n\nA program used by the unit tests.\n\n";
    assert_memory_equal(text, head, sizeof(head) - 1);
    assert_non_null(strstr(text, "| Flag | Env | Type | Range | Default | Description |\n|---|---|---|---|---|---|\n"));
    assert_non_null(strstr(text, "| `--threads` | `ADTRACK_THREADS` | int | 1..64 | 4 | Worker threads |\n"));
    assert_non_null(strstr(text, "| `--listen-addr` | `ADTRACK_LISTEN_ADDR` | string | any | (empty) |"));
    /* A '|' inside a cell is escaped so the table keeps six columns. */
    assert_non_null(strstr(text, "| Kafka brokers \\| bootstrap |\n"));
    size_t rows = 0;
    for (const char *p = text; (p = strstr(p, "\n| `--")) != NULL; p++)
        rows++;
    assert_int_equal(rows, AT_ARRAY_LEN(opts));
    free(text);
}

static void test_at_conf_set__by_name(void **state)
{
    (void)state;
    tconf_t c;
    at_err_t err;
    assert_int_equal(load(&c, NULL, &err, NULL), 0);
    assert_int_equal(at_conf_set(&table, &c, "threads", "12", &err), 0);
    assert_int_equal(c.threads, 12);
    assert_int_equal(at_conf_set(&table, &c, "name", "other", &err), 0);
    assert_string_equal(c.name, "other");
    assert_int_equal(at_conf_set(&table, &c, "brokers", "k3:9092", &err), 0);
    assert_int_equal(c.brokers.count, 3); /* appends, like one more --brokers */
    assert_int_equal(at_conf_set(&table, &c, "threads", "65", &err), -1);
    assert_string_equal(err.msg, "--threads: expected an integer from 1 to 64, got '65'");
    assert_int_equal(c.threads, 12);
    assert_int_equal(at_conf_set(&table, &c, "nope", "1", &err), -1);
    assert_string_equal(err.msg, "unknown option '--nope' (see --help)");
    at_conf_free(&table, &c);
}

static void test_at_conf_load__bad_default_is_internal(void **state)
{
    (void)state;
    static const at_conf_opt_t bad_opts[] = {
        {"threads", AT_CONF_INT, AT_OFF(tconf_t, threads), 1, 64, "100", "Worker threads"},
    };
    const at_conf_table_t bad = {"bad", "", bad_opts, 1};
    tconf_t c = {0};
    at_err_t err;
    char *argv[] = {"bad", NULL};
    assert_int_equal(at_conf_load(&bad, &c, 1, argv, NULL, stdout, &err), -1);
    assert_int_equal(err.code, AT_ERR_INTERNAL);
    assert_non_null(strstr(err.msg, "--threads (default): expected an integer from 1 to 64"));
}

static void test_at_conf_free__null_and_idempotent(void **state)
{
    (void)state;
    tconf_t c;
    at_err_t err;
    at_conf_free(&table, NULL);
    at_conf_free(NULL, &c);
    assert_int_equal(load(&c, NULL, &err, NULL), 0);
    at_conf_free(&table, &c);
    assert_null(c.name);
    at_conf_free(&table, &c); /* second call must not double-free (ASan would catch it) */
}

/* ---- secrets (AT_CONF_SECRET, AT_CONF_CREDS) ---- */

typedef struct sconf_s {
    char *token;
    at_conf_list_t keys;
    char *uri;
    char *plain;
} sconf_t;

static const at_conf_opt_t sopts[] = {
    {"token", AT_CONF_STR | AT_CONF_SECRET, AT_OFF(sconf_t, token), 0, 64, "", "A token"},
    {"keys", AT_CONF_LIST | AT_CONF_SECRET, AT_OFF(sconf_t, keys), 0, 4, "", "Keys"},
    {"uri", AT_CONF_STR | AT_CONF_CREDS, AT_OFF(sconf_t, uri), 0, 256, "", "A URI"},
    {"plain", AT_CONF_STR, AT_OFF(sconf_t, plain), 0, 64, "", "Not secret"},
};

static const at_conf_table_t stable = {"sprog", "Secrets.", sopts, AT_ARRAY_LEN(sopts)};

/* A 0600 file with @p content; returns its path in @p path. */
static void secret_file(char *path, size_t len, const char *content, mode_t mode)
{
    snprintf(path, len, "/tmp/at_conf_secret.XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static int sload(sconf_t *c, char **envp, at_err_t *err, char **args)
{
    char *argv[32] = {"sprog"};
    int argc = 1;
    for (; args != NULL && args[argc - 1] != NULL; argc++)
        argv[argc] = args[argc - 1];
    memset(c, 0, sizeof(*c));
    at_err_clear(err);
    return at_conf_load(&stable, c, argc, argv, envp, stdout, err);
}

static void test_at_conf_load__secret_from_file_flag(void **state)
{
    (void)state;
    char tok[64], keys[64];
    secret_file(tok, sizeof(tok), "tok-from-file\n", 0600);
    secret_file(keys, sizeof(keys), "k1\r\n\nk2\n", 0640);
    sconf_t c;
    at_err_t err;
    assert_int_equal(sload(&c, NULL, &err, ARGS("--token-file", tok, "--keys-file", keys)), 0);
    assert_string_equal(c.token, "tok-from-file");
    assert_int_equal(c.keys.count, 2);
    assert_string_equal(c.keys.items[0], "k1");
    assert_string_equal(c.keys.items[1], "k2");
    at_conf_free(&stable, &c);
    /* The equals form, and at_conf_set by the file option's name. */
    char eq[128];
    snprintf(eq, sizeof(eq), "--token-file=%s", tok);
    assert_int_equal(sload(&c, NULL, &err, ARGS(eq)), 0);
    assert_string_equal(c.token, "tok-from-file");
    assert_int_equal(at_conf_set(&stable, &c, "keys-file", keys, &err), 0);
    assert_int_equal(c.keys.count, 2);
    at_conf_free(&stable, &c);
    unlink(tok);
    unlink(keys);
}

static void test_at_conf_load__secret_from_env_file(void **state)
{
    (void)state;
    char tok[64], var[128];
    secret_file(tok, sizeof(tok), "env-file-tok", 0600);
    snprintf(var, sizeof(var), "ADTRACK_TOKEN_FILE=%s", tok);
    sconf_t c;
    at_err_t err;
    assert_int_equal(sload(&c, ENV(var), &err, NULL), 0);
    assert_string_equal(c.token, "env-file-tok");
    at_conf_free(&stable, &c);
    /* The command line still wins over the environment. */
    assert_int_equal(sload(&c, ENV(var), &err, ARGS("--token", "argv-tok")), 0);
    assert_string_equal(c.token, "argv-tok");
    at_conf_free(&stable, &c);
    /* A value and a file in the same source contradict each other. */
    assert_int_equal(sload(&c, ENV(var, "ADTRACK_TOKEN=x"), &err, NULL), -1);
    assert_non_null(strstr(err.msg, "ADTRACK_TOKEN and ADTRACK_TOKEN_FILE: expected only one"));
    assert_int_equal(sload(&c, NULL, &err, ARGS("--token", "x", "--token-file", tok)), -1);
    assert_non_null(strstr(err.msg, "--token and --token-file: expected only one"));
    unlink(tok);
}

static void test_at_conf_load__secret_file_checks(void **state)
{
    (void)state;
    char tok[64], two[64];
    secret_file(tok, sizeof(tok), "world-readable-secret", 0644);
    secret_file(two, sizeof(two), "line1\nline2\n", 0600);
    sconf_t c;
    at_err_t err;
    assert_int_equal(sload(&c, NULL, &err, ARGS("--token-file", tok)), -1);
    assert_non_null(strstr(err.msg, "--token-file: "));
    assert_non_null(strstr(err.msg, "readable by every user"));
    assert_null(strstr(err.msg, "world-readable-secret"));
    assert_int_equal(sload(&c, NULL, &err, ARGS("--token-file", two)), -1);
    assert_non_null(strstr(err.msg, "more than one line"));
    assert_null(strstr(err.msg, "line1"));
    /* Only rows marked secret have a file option. */
    assert_int_equal(sload(&c, NULL, &err, ARGS("--plain-file", two)), -1);
    assert_non_null(strstr(err.msg, "unknown option '--plain-file'"));
    unlink(tok);
    unlink(two);
}

static void test_at_conf_usage__secret_file_rows_no_values(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    sconf_t c = {0};
    at_err_t err;
    char *argv[] = {"sprog", "--help", NULL};
    /* The environment holds a secret: --help must not show it. */
    assert_int_equal(at_conf_load(&stable, &c, 2, argv, ENV("ADTRACK_TOKEN=env-secret-value"), out, &err),
                     AT_CONF_EXIT_HELP);
    fclose(out);
    assert_null(strstr(buf, "env-secret-value"));
    assert_non_null(strstr(buf, "  --token-file <path>\n"));
    assert_non_null(strstr(buf, "Env: ADTRACK_TOKEN_FILE"));
    assert_non_null(strstr(buf, "  --keys-file <path>\n"));
    assert_non_null(strstr(buf, "  --uri-file <path>\n"));
    assert_null(strstr(buf, "--plain-file"));
    free(buf);
    buf = NULL;
    out = open_memstream(&buf, &len);
    at_conf_markdown(&stable, out);
    fclose(out);
    assert_non_null(strstr(buf, "| `--token-file` | `ADTRACK_TOKEN_FILE` | path |"));
    free(buf);
}

/* Appends @p v and @p sep to the string in @p buf (128 bytes). */
static void append(char *buf, const char *v, const char *sep)
{
    size_t n = strlen(buf);
    snprintf(buf + n, 128 - n, "%s%s", v, sep);
}

static void record_opt(const at_conf_opt_t *o, void *arg)
{
    append(arg, o->name, ",");
}

static void test_at_conf_argv_secrets__found_and_scrubbed(void **state)
{
    (void)state;
    char tokv[] = "tok-on-argv", urip[] = "--uri=mongodb://u:pw123@h/", uriplain[] = "mongodb://h/", keyv[] = "k1",
         plainv[] = "p";
    char *argv[] = {"sprog", "--token", tokv, urip, "--keys", keyv, "--plain", plainv, "--token-file", "/x", NULL};
    char names[128] = "";
    assert_int_equal(at_conf_argv_secrets(&stable, 10, argv, true, record_opt, names), 3);
    assert_string_equal(names, "token,uri,keys,");
    assert_string_equal(tokv, "***********");
    assert_string_equal(urip, "--uri=********************"); /* 20: the whole URI */
    assert_string_equal(keyv, "**");
    assert_string_equal(plainv, "p");
    /* A URI without a password is no secret. */
    char *argv2[] = {"sprog", "--uri", uriplain, NULL};
    assert_int_equal(at_conf_argv_secrets(&stable, 3, argv2, true, NULL, NULL), 0);
    assert_string_equal(uriplain, "mongodb://h/");
}

static void collect(const char *v, void *arg)
{
    append(arg, v, "|");
}

static void test_at_conf_foreach_secret__values_and_uri_password(void **state)
{
    (void)state;
    sconf_t c;
    at_err_t err;
    assert_int_equal(sload(&c, NULL, &err,
                           ARGS("--token", "t1", "--keys", "k1", "--keys", "k2", "--uri", "redis://u:p%21w@h:1",
                                "--plain", "nope")),
                     0);
    char all[128] = "";
    at_conf_foreach_secret(&stable, &c, collect, all);
    assert_string_equal(all, "t1|k1|k2|p!w|");
    at_conf_free(&stable, &c);
}

static void test_at_conf_load__secret_file_name_clash_is_internal(void **state)
{
    (void)state;
    static const at_conf_opt_t clash_opts[] = {
        {"token", AT_CONF_STR | AT_CONF_SECRET, AT_OFF(sconf_t, token), 0, 64, "", "A token"},
        {"token-file", AT_CONF_STR, AT_OFF(sconf_t, plain), 0, 64, "", "Clashes"},
    };
    const at_conf_table_t clash = {"clash", "", clash_opts, 2};
    sconf_t c = {0};
    at_err_t err;
    char *argv[] = {"clash", NULL};
    assert_int_equal(at_conf_load(&clash, &c, 1, argv, NULL, stdout, &err), -1);
    assert_int_equal(err.code, AT_ERR_INTERNAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_at_conf_load__defaults),
        cmocka_unit_test(test_at_conf_load__env_overrides_default),
        cmocka_unit_test(test_at_conf_load__argv_overrides_env),
        cmocka_unit_test(test_at_conf_load__equals_form_and_last_wins),
        cmocka_unit_test(test_at_conf_load__negative_int),
        cmocka_unit_test(test_at_conf_load__int_rejects_bad_values),
        cmocka_unit_test(test_at_conf_load__env_error_names_variable),
        cmocka_unit_test(test_at_conf_load__bool_forms),
        cmocka_unit_test(test_at_conf_load__bool_rejects_other),
        cmocka_unit_test(test_at_conf_load__str_max_length),
        cmocka_unit_test(test_at_conf_load__list_argv_repeatable_and_replaces_env),
        cmocka_unit_test(test_at_conf_load__list_env_empty_clears_default),
        cmocka_unit_test(test_at_conf_load__list_limits),
        cmocka_unit_test(test_at_conf_load__unknown_option),
        cmocka_unit_test(test_at_conf_load__missing_value),
        cmocka_unit_test(test_at_conf_load__help),
        cmocka_unit_test(test_at_conf_load__help_markdown),
        cmocka_unit_test(test_at_conf_set__by_name),
        cmocka_unit_test(test_at_conf_load__bad_default_is_internal),
        cmocka_unit_test(test_at_conf_free__null_and_idempotent),
        cmocka_unit_test(test_at_conf_load__secret_from_file_flag),
        cmocka_unit_test(test_at_conf_load__secret_from_env_file),
        cmocka_unit_test(test_at_conf_load__secret_file_checks),
        cmocka_unit_test(test_at_conf_usage__secret_file_rows_no_values),
        cmocka_unit_test(test_at_conf_argv_secrets__found_and_scrubbed),
        cmocka_unit_test(test_at_conf_foreach_secret__values_and_uri_password),
        cmocka_unit_test(test_at_conf_load__secret_file_name_clash_is_internal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
