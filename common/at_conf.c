/*
 * at_conf.c: table-driven configuration (see at_conf.h).
 *
 * Every value, whatever its source, goes through set_value() so defaults, environment and
 * command line get exactly the same checks and error messages. Only the prefix naming the
 * source differs: "--threads" for argv and at_conf_set(), "ADTRACK_THREADS (--threads)" for
 * the environment, so an operator can tell which of the two to fix.
 */
#include "at_conf.h"

#include "at_secret.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <strings.h>

#define ENV_PREFIX "ADTRACK_"
/* Long enough for any sane option name; longer names are truncated in env lookups only. */
#define NAME_MAX_LEN 128
/* Echoed values are cut so a pasted blob cannot push the option name out of the message. */
#define ECHO_MAX "64"
/* The suffix of the option (and of the environment variable) that names a secret's file. */
#define FILE_SUFFIX "-file"
#define FILE_SUFFIX_LEN (sizeof(FILE_SUFFIX) - 1)

static void *field(void *conf, const at_conf_opt_t *o)
{
    return (char *)conf + o->offset;
}

/* "redis-timeout-ms" -> "ADTRACK_REDIS_TIMEOUT_MS". '.' maps like '-' because shells cannot
 * name a variable containing either. */
static void env_name(const at_conf_opt_t *o, char *out, size_t outlen)
{
    size_t plen = sizeof(ENV_PREFIX) - 1;
    size_t i = 0;
    if (outlen == 0)
        return;
    memcpy(out, ENV_PREFIX, AT_MIN(plen, outlen - 1));
    i = AT_MIN(plen, outlen - 1);
    for (const char *p = o->name; *p != '\0' && i + 1 < outlen; p++) {
        char c = *p;
        out[i++] = (c == '-' || c == '.') ? '_' : (char)toupper((unsigned char)c);
    }
    out[i] = '\0';
}

/* The environment variable of a secret's file: "ADTRACK_ADMIN_TOKEN_FILE". */
static void env_name_file(const at_conf_opt_t *o, char *out, size_t outlen)
{
    env_name(o, out, outlen);
    size_t n = strlen(out);
    if (n + 5 < outlen)
        memcpy(out + n, "_FILE", 6);
}

static const at_conf_opt_t *find_opt(const at_conf_table_t *t, const char *name, size_t namelen)
{
    for (size_t i = 0; i < t->nopts; i++) {
        const char *n = t->opts[i].name;
        if (strlen(n) == namelen && memcmp(n, name, namelen) == 0)
            return &t->opts[i];
    }
    return NULL;
}

/* "admin-token-file" -> the secret row "admin-token"; NULL when @p name is not the file
 * variant of a row that has one. */
static const at_conf_opt_t *find_file_opt(const at_conf_table_t *t, const char *name, size_t namelen)
{
    if (namelen <= FILE_SUFFIX_LEN || memcmp(name + namelen - FILE_SUFFIX_LEN, FILE_SUFFIX, FILE_SUFFIX_LEN) != 0)
        return NULL;
    const at_conf_opt_t *o = find_opt(t, name, namelen - FILE_SUFFIX_LEN);
    return o != NULL && AT_CONF_HAS_FILE(o) ? o : NULL;
}

static void list_clear(at_conf_list_t *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

static int list_append(at_conf_list_t *l, const char *s, size_t len)
{
    char *copy = strndup(s, len);
    if (copy == NULL)
        return -1;
    char **items = realloc(l->items, (l->count + 1) * sizeof(*items));
    if (items == NULL) {
        free(copy);
        return -1;
    }
    items[l->count++] = copy;
    l->items = items;
    return 0;
}

static int parse_int(const at_conf_opt_t *o, const char *who, const char *v, int64_t *out, at_err_t *err)
{
    /* strtoll alone would accept leading blanks and '+'; plain decimal means sign and digits only. */
    const char *d = (v[0] == '-') ? v + 1 : v;
    bool syntax_ok = isdigit((unsigned char)d[0]) != 0;
    long long n = 0;
    if (syntax_ok) {
        char *end = NULL;
        errno = 0;
        n = strtoll(v, &end, 10);
        syntax_ok = errno == 0 && *end == '\0';
    }
    if (!syntax_ok || n < o->min || n > o->max)
        return at_err_set(err, syntax_ok ? AT_ERR_RANGE : AT_ERR_INVALID,
                          "%s: expected an integer from %" PRId64 " to %" PRId64 ", got '%." ECHO_MAX "s'", who, o->min,
                          o->max, v);
    *out = n;
    return 0;
}

static int parse_bool(const char *who, const char *v, bool *out, at_err_t *err)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < AT_ARRAY_LEN(yes); i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return at_err_set(err, AT_ERR_INVALID, "%s: expected true/false/1/0/yes/no/on/off, got '%." ECHO_MAX "s'", who, v);
}

/* One list item from the command line or at_conf_set(). */
static int list_add_item(const at_conf_opt_t *o, const char *who, at_conf_list_t *l, const char *v, size_t len,
                         at_err_t *err)
{
    if (len == 0)
        return at_err_set(err, AT_ERR_INVALID, "%s: expected a non-empty value", who);
    if (o->max > 0 && l->count >= (uint64_t)o->max)
        return at_err_set(err, AT_ERR_TOO_LARGE, "%s: expected at most %" PRId64 " values, got more", who, o->max);
    if (list_append(l, v, len) != 0)
        return at_err_set(err, AT_ERR_NOMEM, "%s: out of memory", who);
    return 0;
}

/* A whole list as comma-separated text (environment and defaults): replaces the current
 * items. An empty string is an empty list, so an env var can clear a default. Items are built
 * in a scratch list first so a bad value leaves the previous items intact. */
static int list_set_csv(const at_conf_opt_t *o, const char *who, at_conf_list_t *l, const char *v, at_err_t *err)
{
    at_conf_list_t tmp = {0};
    if (v[0] != '\0') {
        const char *p = v;
        for (;;) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            if (len == 0) {
                list_clear(&tmp);
                return at_err_set(err, AT_ERR_INVALID,
                                  "%s: expected a comma-separated list without empty items, got '%." ECHO_MAX "s'", who,
                                  v);
            }
            if (o->max > 0 && tmp.count >= (uint64_t)o->max) {
                list_clear(&tmp);
                return at_err_set(err, AT_ERR_TOO_LARGE, "%s: expected at most %" PRId64 " comma-separated values", who,
                                  o->max);
            }
            if (list_append(&tmp, p, len) != 0) {
                list_clear(&tmp);
                return at_err_set(err, AT_ERR_NOMEM, "%s: out of memory", who);
            }
            if (comma == NULL)
                break;
            p = comma + 1;
        }
    }
    list_clear(l);
    *l = tmp;
    return 0;
}

/*
 * Applies @p v to the option's field. For lists, @p csv selects between "the whole list as
 * comma-separated text" (env, default) and "one more item" (argv, at_conf_set).
 * @p who is the message prefix naming the source.
 */
static int set_value(const at_conf_opt_t *o, void *conf, const char *v, bool csv, const char *who, at_err_t *err)
{
    void *f = field(conf, o);
    switch (AT_CONF_BASE(o)) {
    case AT_CONF_INT: {
        int64_t n = 0;
        if (parse_int(o, who, v, &n, err) != 0)
            return -1;
        memcpy(f, &n, sizeof(n));
        return 0;
    }
    case AT_CONF_BOOL: {
        bool b = false;
        if (parse_bool(who, v, &b, err) != 0)
            return -1;
        memcpy(f, &b, sizeof(b));
        return 0;
    }
    case AT_CONF_STR: {
        size_t len = strlen(v);
        /* The value itself is not echoed: strings are where keys and passwords live. */
        if (o->max > 0 && len > (uint64_t)o->max)
            return at_err_set(err, AT_ERR_TOO_LARGE, "%s: expected at most %" PRId64 " bytes, got %zu", who, o->max,
                              len);
        char *copy = strdup(v);
        if (copy == NULL)
            return at_err_set(err, AT_ERR_NOMEM, "%s: out of memory", who);
        char *old;
        memcpy(&old, f, sizeof(old));
        free(old);
        memcpy(f, &copy, sizeof(copy));
        return 0;
    }
    case AT_CONF_LIST:
        if (csv)
            return list_set_csv(o, who, f, v, err);
        return list_add_item(o, who, f, v, strlen(v), err);
    }
    return at_err_set(err, AT_ERR_INTERNAL, "%s: unknown option type %d", who, (int)AT_CONF_BASE(o));
}

/*
 * Sets the option from the secret file @p path: a string takes the whole file (trailing
 * newlines dropped; a newline inside is refused, it would be a second value), a list one
 * value per non-empty line, replacing what was there. The file's content is wiped from
 * memory afterwards; errors never quote it.
 */
static int set_from_file(const at_conf_opt_t *o, void *conf, const char *path, const char *who, at_err_t *err)
{
    char *text = at_secret_read_file(path, who, err);
    if (text == NULL)
        return -1;
    int rc = 0;
    if (AT_CONF_BASE(o) == AT_CONF_LIST) {
        at_conf_list_t tmp = {0};
        for (char *line = text; *line != '\0' && rc == 0;) {
            size_t len = strcspn(line, "\n");
            size_t vlen = len;
            if (vlen > 0 && line[vlen - 1] == '\r')
                vlen--;
            if (vlen > 0)
                rc = list_add_item(o, who, &tmp, line, vlen, err);
            line += len;
            if (*line == '\n')
                line++;
        }
        if (rc == 0 && tmp.count == 0)
            rc = at_err_set(err, AT_ERR_INVALID, "%s: %.160s holds no value", who, path);
        if (rc == 0) {
            list_clear(field(conf, o));
            *(at_conf_list_t *)field(conf, o) = tmp;
        } else {
            for (size_t i = 0; i < tmp.count; i++)
                at_secret_wipe(tmp.items[i]);
            list_clear(&tmp);
        }
    } else if (strchr(text, '\n') != NULL || strchr(text, '\r') != NULL) {
        rc = at_err_set(err, AT_ERR_INVALID, "%s: %.160s holds more than one line; expected one value", who, path);
    } else if (text[0] == '\0') {
        rc = at_err_set(err, AT_ERR_INVALID, "%s: %.160s is empty", who, path);
    } else {
        rc = set_value(o, conf, text, false, who, err);
    }
    at_secret_wipe(text);
    free(text);
    return rc;
}

/* A table whose secret "x" would share its file option's name with a real option "x-file"
 * cannot be parsed unambiguously: a bug in the table. */
static int check_table(const at_conf_table_t *t, at_err_t *err)
{
    for (size_t i = 0; i < t->nopts; i++) {
        const at_conf_opt_t *o = &t->opts[i];
        if (!AT_CONF_HAS_FILE(o))
            continue;
        if (AT_CONF_BASE(o) != AT_CONF_STR && AT_CONF_BASE(o) != AT_CONF_LIST)
            return at_err_set(err, AT_ERR_INTERNAL, "--%s: only strings and lists can be secret", o->name);
        char name[NAME_MAX_LEN + FILE_SUFFIX_LEN + 1];
        snprintf(name, sizeof(name), "%s" FILE_SUFFIX, o->name);
        if (find_opt(t, name, strlen(name)) != NULL)
            return at_err_set(err, AT_ERR_INTERNAL, "--%s: clashes with the file option of secret --%s", name,
                              o->name);
    }
    return 0;
}

static int apply_defaults(const at_conf_table_t *t, void *conf, at_err_t *err)
{
    for (size_t i = 0; i < t->nopts; i++) {
        const at_conf_opt_t *o = &t->opts[i];
        const char *def = o->def ? o->def : "";
        char who[NAME_MAX_LEN + 32];
        /* Numbers and booleans with no default stay zero rather than failing the parse. */
        if (def[0] == '\0' && (AT_CONF_BASE(o) == AT_CONF_INT || AT_CONF_BASE(o) == AT_CONF_BOOL))
            continue;
        snprintf(who, sizeof(who), "--%s (default)", o->name);
        if (set_value(o, conf, def, true, who, err) != 0) {
            /* A bad default is a bug in the table, not an operator error. */
            err->code = AT_ERR_INTERNAL;
            return -1;
        }
    }
    return 0;
}

static int apply_env(const at_conf_table_t *t, void *conf, char **envp, at_err_t *err)
{
    if (envp == NULL)
        return 0;
    for (size_t i = 0; i < t->nopts; i++) {
        const at_conf_opt_t *o = &t->opts[i];
        char env[NAME_MAX_LEN + sizeof(ENV_PREFIX)];
        env_name(o, env, sizeof(env));
        size_t elen = strlen(env);
        /* Walk all of envp so the last duplicate wins, as getenv-based shells would see it. */
        const char *val = NULL, *file = NULL;
        char fenv[NAME_MAX_LEN + sizeof(ENV_PREFIX) + 8];
        env_name_file(o, fenv, sizeof(fenv));
        size_t flen = strlen(fenv);
        for (char **e = envp; *e != NULL; e++) {
            if (strncmp(*e, env, elen) == 0 && (*e)[elen] == '=')
                val = *e + elen + 1;
            else if (AT_CONF_HAS_FILE(o) && strncmp(*e, fenv, flen) == 0 && (*e)[flen] == '=')
                file = *e + flen + 1;
        }
        char who[2 * NAME_MAX_LEN + 32];
        if (val != NULL && file != NULL)
            return at_err_set(err, AT_ERR_INVALID, "%s and %s: expected only one of the two (--%s)", env, fenv,
                              o->name);
        if (file != NULL) {
            snprintf(who, sizeof(who), "%s (--%s" FILE_SUFFIX ")", fenv, o->name);
            if (set_from_file(o, conf, file, who, err) != 0)
                return -1;
            continue;
        }
        if (val == NULL)
            continue;
        snprintf(who, sizeof(who), "%s (--%s)", env, o->name);
        if (set_value(o, conf, val, true, who, err) != 0)
            return -1;
    }
    return 0;
}

/* A value must follow a flag; an argument that itself looks like a flag means the value was
 * forgotten ("--name --threads 4"), so it is not taken. `--name=--x` still works. */
static bool looks_like_flag(const char *s)
{
    return s[0] == '-' && s[1] == '-';
}

/* Returns 0 (no help asked), 1 (--help) or 2 (--help-markdown). Skips flag values so that
 * "--name --help" style mistakes are caught by the main pass rather than here. */
static int find_help(const at_conf_table_t *t, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0)
            return 1;
        if (strcmp(a, "--help-markdown") == 0)
            return 2;
        if (looks_like_flag(a) && strchr(a, '=') == NULL &&
            (find_opt(t, a + 2, strlen(a + 2)) != NULL || find_file_opt(t, a + 2, strlen(a + 2)) != NULL) &&
            i + 1 < argc && !looks_like_flag(argv[i + 1]))
            i++;
    }
    return 0;
}

static int apply_argv(const at_conf_table_t *t, void *conf, int argc, char **argv, at_err_t *err)
{
    /* Lists given on the command line replace whatever env or default supplied, rather than
     * appending to it: the first argv occurrence clears the list. */
    unsigned char *seen = calloc(t->nopts ? t->nopts : 1, sizeof(*seen));
    if (seen == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "out of memory parsing arguments");
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (!looks_like_flag(a)) {
            rc = at_err_set(err, AT_ERR_INVALID, "unknown option '%." ECHO_MAX "s' (see --help)", a);
            break;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t namelen = eq ? (size_t)(eq - name) : strlen(name);
        const at_conf_opt_t *o = find_opt(t, name, namelen);
        bool from_file = false;
        if (o == NULL && (o = find_file_opt(t, name, namelen)) != NULL)
            from_file = true;
        if (o == NULL) {
            rc =
                at_err_set(err, AT_ERR_INVALID, "unknown option '--%.*s' (see --help)", (int)AT_MIN(namelen, 64), name);
            break;
        }
        const char *val;
        if (eq != NULL) {
            val = eq + 1;
        } else if (i + 1 < argc && !looks_like_flag(argv[i + 1])) {
            val = argv[++i];
        } else {
            rc = at_err_set(err, AT_ERR_INVALID, "--%s%s: missing value", o->name, from_file ? FILE_SUFFIX : "");
            break;
        }
        size_t idx = (size_t)(o - t->opts);
        char who[NAME_MAX_LEN + 16];
        snprintf(who, sizeof(who), "--%s%s", o->name, from_file ? FILE_SUFFIX : "");
        /* seen: 1 = given as a value, 2 = given as a file; both is a contradiction. */
        unsigned char how = from_file ? 2 : 1;
        if (seen[idx] != 0 && (seen[idx] != how || from_file)) {
            rc = at_err_set(err, AT_ERR_INVALID, "--%s and --%s" FILE_SUFFIX ": expected only one of the two, once",
                            o->name, o->name);
            break;
        }
        if (from_file) {
            seen[idx] = how;
            rc = set_from_file(o, conf, val, who, err);
            continue;
        }
        if (AT_CONF_BASE(o) == AT_CONF_LIST && seen[idx] == 0)
            list_clear(field(conf, o));
        seen[idx] = how;
        rc = set_value(o, conf, val, false, who, err);
    }
    free(seen);
    return rc;
}

int at_conf_load(const at_conf_table_t *t, void *conf, int argc, char **argv, char **envp, FILE *out, at_err_t *err)
{
    at_err_t local;
    if (err == NULL)
        err = &local;
    at_err_clear(err);

    switch (find_help(t, argc, argv)) {
    case 1:
        at_conf_usage(t, out);
        return AT_CONF_EXIT_HELP;
    case 2:
        at_conf_markdown(t, out);
        return AT_CONF_EXIT_HELP;
    default:
        break;
    }

    if (check_table(t, err) != 0 || apply_defaults(t, conf, err) != 0 || apply_env(t, conf, envp, err) != 0 ||
        apply_argv(t, conf, argc, argv, err) != 0) {
        /* Do not hand back a half-filled struct; at_conf_free() is idempotent so a caller
         * that frees again anyway is fine. */
        at_conf_free(t, conf);
        return -1;
    }
    return 0;
}

int at_conf_set(const at_conf_table_t *t, void *conf, const char *name, const char *value, at_err_t *err)
{
    const at_conf_opt_t *o = find_opt(t, name, strlen(name));
    bool from_file = false;
    if (o == NULL && (o = find_file_opt(t, name, strlen(name))) != NULL)
        from_file = true;
    if (o == NULL)
        return at_err_set(err, AT_ERR_INVALID, "unknown option '--%." ECHO_MAX "s' (see --help)", name);
    if (value == NULL)
        return at_err_set(err, AT_ERR_INVALID, "--%s: missing value", name);
    char who[NAME_MAX_LEN + 16];
    snprintf(who, sizeof(who), "--%s%s", o->name, from_file ? FILE_SUFFIX : "");
    if (from_file)
        return set_from_file(o, conf, value, who, err);
    return set_value(o, conf, value, false, who, err);
}

static const char *type_name(at_conf_type_t type)
{
    switch (type) {
    case AT_CONF_INT:
        return "int";
    case AT_CONF_BOOL:
        return "bool";
    case AT_CONF_STR:
        return "string";
    case AT_CONF_LIST:
        return "list";
    }
    return "?";
}

/* Human-readable accepted range, shared by --help and Markdown so the two never disagree. */
static void range_text(const at_conf_opt_t *o, char *buf, size_t len)
{
    switch (AT_CONF_BASE(o)) {
    case AT_CONF_INT:
        snprintf(buf, len, "%" PRId64 "..%" PRId64, o->min, o->max);
        return;
    case AT_CONF_BOOL:
        snprintf(buf, len, "true/false");
        return;
    case AT_CONF_STR:
        if (o->max > 0)
            snprintf(buf, len, "at most %" PRId64 " bytes", o->max);
        else
            snprintf(buf, len, "any");
        return;
    case AT_CONF_LIST:
        if (o->max > 0)
            snprintf(buf, len, "repeatable, at most %" PRId64 " values", o->max);
        else
            snprintf(buf, len, "repeatable");
        return;
    }
    snprintf(buf, len, "?");
}

static const char *default_text(const at_conf_opt_t *o)
{
    if (o->def != NULL && o->def[0] != '\0')
        return o->def;
    switch (AT_CONF_BASE(o)) {
    case AT_CONF_INT:
        return "0";
    case AT_CONF_BOOL:
        return "false";
    default:
        return "(empty)";
    }
}

/* The description of a secret's file option. */
static const char *file_help(const at_conf_opt_t *o)
{
    if (AT_CONF_BASE(o) == AT_CONF_LIST)
        return "Secret: read the values of the option above from this file, one per line (see docs/SECURITY.md).";
    if (((unsigned)o->type & AT_CONF_CREDS) != 0)
        return "Read the option above from this file, for a URI that holds a password (see docs/SECURITY.md).";
    return "Secret: read the option above from this file; a trailing newline is ignored (see docs/SECURITY.md).";
}

void at_conf_usage(const at_conf_table_t *t, FILE *out)
{
    fprintf(out, "Usage: %s [--option value | --option=value]...\n\n", t->program);
    if (t->summary != NULL && t->summary[0] != '\0')
        fprintf(out, "%s\n\n", t->summary);
    fprintf(out, "Options (environment variables are overridden by flags):\n");
    for (size_t i = 0; i < t->nopts; i++) {
        const at_conf_opt_t *o = &t->opts[i];
        char env[NAME_MAX_LEN + sizeof(ENV_PREFIX)];
        char range[96];
        env_name(o, env, sizeof(env));
        range_text(o, range, sizeof(range));
        fprintf(out, "  --%s <%s>\n", o->name, type_name(AT_CONF_BASE(o)));
        fprintf(out, "      %s\n", o->help ? o->help : "");
        fprintf(out, "      Range: %s. Default: %s. Env: %s%s\n", range, default_text(o), env,
                AT_CONF_BASE(o) == AT_CONF_LIST ? " (comma-separated)" : "");
        if (AT_CONF_HAS_FILE(o)) {
            char fenv[NAME_MAX_LEN + sizeof(ENV_PREFIX) + 8];
            env_name_file(o, fenv, sizeof(fenv));
            if (((unsigned)o->type & AT_CONF_CREDS) != 0)
                fprintf(out, "      With a password in it, keep it off the command line: use --%s" FILE_SUFFIX " or %s.\n",
                        o->name, env);
            else
                fprintf(out, "      Secret: keep it off the command line: use --%s" FILE_SUFFIX " or %s.\n", o->name, env);
            fprintf(out, "  --%s" FILE_SUFFIX " <path>\n", o->name);
            fprintf(out, "      %s\n", file_help(o));
            fprintf(out, "      Range: a file not readable by others. Default: (none). Env: %s\n", fenv);
        }
    }
    fprintf(out, "  --help\n      Print this help and exit.\n");
    fprintf(out, "  --help-markdown\n      Print the options as a Markdown table and exit.\n");
}

/* Writes @p s into a Markdown table cell; '|' would end the cell and a newline the row. */
static void md_cell(FILE *out, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '|')
            fputs("\\|", out);
        else if (*s == '\n' || *s == '\r')
            fputc(' ', out);
        else
            fputc(*s, out);
    }
}

void at_conf_markdown(const at_conf_table_t *t, FILE *out)
{
    fprintf(out, "## %s\n\n", t->program);
    if (t->summary != NULL && t->summary[0] != '\0')
        fprintf(out, "%s\n\n", t->summary);
    fprintf(out, "| Flag | Env | Type | Range | Default | Description |\n");
    fprintf(out, "|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < t->nopts; i++) {
        const at_conf_opt_t *o = &t->opts[i];
        char env[NAME_MAX_LEN + sizeof(ENV_PREFIX)];
        char range[96];
        env_name(o, env, sizeof(env));
        range_text(o, range, sizeof(range));
        fprintf(out, "| `--%s` | `%s` | %s | ", o->name, env, type_name(AT_CONF_BASE(o)));
        md_cell(out, range);
        fputs(" | ", out);
        md_cell(out, default_text(o));
        fputs(" | ", out);
        md_cell(out, o->help ? o->help : "");
        fputs(" |\n", out);
        if (AT_CONF_HAS_FILE(o)) {
            char fenv[NAME_MAX_LEN + sizeof(ENV_PREFIX) + 8];
            env_name_file(o, fenv, sizeof(fenv));
            fprintf(out, "| `--%s" FILE_SUFFIX "` | `%s` | path | a file not readable by others | (none) | ", o->name,
                    fenv);
            md_cell(out, file_help(o));
            fputs(" |\n", out);
        }
    }
}

void at_conf_free(const at_conf_table_t *t, void *conf)
{
    if (t == NULL || conf == NULL)
        return;
    for (size_t i = 0; i < t->nopts; i++) {
        const at_conf_opt_t *o = &t->opts[i];
        void *f = field(conf, o);
        if (AT_CONF_BASE(o) == AT_CONF_STR) {
            char *s;
            memcpy(&s, f, sizeof(s));
            free(s);
            s = NULL;
            memcpy(f, &s, sizeof(s));
        } else if (AT_CONF_BASE(o) == AT_CONF_LIST) {
            list_clear(f);
        }
    }
}

/* True when the row's value, as given, is a secret (see AT_CONF_CREDS). */
static bool value_is_secret(const at_conf_opt_t *o, const char *v)
{
    if (((unsigned)o->type & AT_CONF_SECRET) != 0)
        return v[0] != '\0';
    if (((unsigned)o->type & AT_CONF_CREDS) != 0) {
        char *pw = at_secret_uri_password(v);
        bool has = pw != NULL;
        if (pw != NULL) {
            at_secret_wipe(pw);
            free(pw);
        }
        return has;
    }
    return false;
}

size_t at_conf_argv_secrets(const at_conf_table_t *t, int argc, char **argv, bool scrub,
                            void (*found)(const at_conf_opt_t *o, void *arg), void *arg)
{
    size_t n = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (!looks_like_flag(a))
            continue;
        char *eq = strchr(a + 2, '=');
        size_t namelen = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        const at_conf_opt_t *o = find_opt(t, a + 2, namelen);
        char *val = NULL;
        if (eq != NULL)
            val = eq + 1;
        else if (i + 1 < argc && !looks_like_flag(argv[i + 1]))
            val = argv[++i];
        else if (o == NULL && find_file_opt(t, a + 2, namelen) != NULL && i + 1 < argc)
            i++; /* --x-file PATH: the path is no secret */
        if (o == NULL || val == NULL || !value_is_secret(o, val))
            continue;
        n++;
        if (found != NULL)
            found(o, arg);
        if (scrub)
            for (char *p = val; *p != '\0'; p++)
                *p = '*';
    }
    return n;
}

void at_conf_foreach_secret(const at_conf_table_t *t, const void *conf, void (*cb)(const char *value, void *arg),
                            void *arg)
{
    for (size_t i = 0; i < t->nopts; i++) {
        const at_conf_opt_t *o = &t->opts[i];
        const void *f = (const char *)conf + o->offset;
        if (((unsigned)o->type & AT_CONF_SECRET) != 0 && AT_CONF_BASE(o) == AT_CONF_LIST) {
            const at_conf_list_t *l = f;
            for (size_t j = 0; j < l->count; j++)
                cb(l->items[j], arg);
        } else if (AT_CONF_HAS_FILE(o) && AT_CONF_BASE(o) == AT_CONF_STR) {
            const char *s;
            memcpy(&s, f, sizeof(s));
            if (s == NULL || s[0] == '\0')
                continue;
            if (((unsigned)o->type & AT_CONF_SECRET) != 0) {
                cb(s, arg);
                continue;
            }
            char *pw = at_secret_uri_password(s);
            if (pw != NULL) {
                cb(pw, arg);
                at_secret_wipe(pw);
                free(pw);
            }
        }
    }
}
