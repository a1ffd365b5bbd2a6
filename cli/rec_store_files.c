/*
 * rec_store_files.c: the file-sink store of the reconciliation command (rec_store.h).
 *
 * Reads, in each data directory given (in that order): every events-<seq>.jsonl and
 * rejected-<seq>.jsonl (docs/ENRICHER.md "Sinks"), then stats_hourly-<seq>.jsonl in
 * increasing <seq> and stats_hourly-corrections.jsonl last (docs/REPORTS.md). One pass over
 * the whole range: the files are not indexed by time, so reading them per hour would read
 * everything once per hour.
 *
 * Duplicates are resolved as mongoimport would store the files: an event _id seen before
 * (a batch redelivered after a crash or across a rebalance, appended again) is counted
 * once; for a stats_hourly _id the last line read wins. A last line without its newline is
 * a write in progress (the enricher writes a batch with one write(2)) and is skipped.
 */
#include "rec_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rec_map.h"

#define CORRECTIONS_FILE "stats_hourly-corrections.jsonl"

typedef struct files_store_s {
    rec_store_t base;
    char **dirs; /* heap copies */
    size_t ndirs;
} files_store_t;

static int64_t files_step_ms(rec_store_t *s, int64_t from_ms, int64_t to_ms)
{
    (void)s;
    return to_ms - from_ms;
}

typedef struct sink_file_s {
    char *name; /* heap */
    int kind;   /* 0 events, 1 rejected, 2 stats_hourly, 3 corrections */
    unsigned long long seq;
} sink_file_t;

/* "<prefix>-<decimal>.jsonl" -> its seq; false for any other name. */
static bool seq_of(const char *name, const char *prefix, unsigned long long *seq)
{
    size_t plen = strlen(prefix);
    if (strncmp(name, prefix, plen) != 0 || name[plen] != '-' || name[plen + 1] < '0' || name[plen + 1] > '9')
        return false;
    char *end;
    errno = 0;
    *seq = strtoull(name + plen + 1, &end, 10);
    return errno == 0 && strcmp(end, ".jsonl") == 0;
}

static int by_kind_seq(const void *a, const void *b)
{
    const sink_file_t *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The sink files of @p dir in reading order, into *@p out (heap; free names and array). */
static int list_dir(const char *dir, sink_file_t **out, size_t *n, at_err_t *err)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return at_err_set(err, AT_ERR_IO, "--data-dir %s: %s", dir, strerror(errno));
    size_t cap = 16;
    sink_file_t *v = malloc(cap * sizeof(*v));
    *n = 0;
    struct dirent *de;
    while (v != NULL && (de = readdir(d)) != NULL) {
        sink_file_t f = {0};
        if (seq_of(de->d_name, "events", &f.seq))
            f.kind = 0;
        else if (seq_of(de->d_name, "rejected", &f.seq))
            f.kind = 1;
        else if (seq_of(de->d_name, "stats_hourly", &f.seq))
            f.kind = 2;
        else if (strcmp(de->d_name, CORRECTIONS_FILE) == 0)
            f.kind = 3;
        else
            continue;
        if (*n == cap) {
            sink_file_t *nv = realloc(v, (cap *= 2) * sizeof(*v));
            if (nv == NULL)
                break;
            v = nv;
        }
        f.name = strdup(de->d_name);
        v[(*n)++] = f;
    }
    closedir(d);
    if (v == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "out of memory");
    qsort(v, *n, sizeof(*v), by_kind_seq);
    *out = v;
    return 0;
}

typedef struct load_s {
    rec_tally_t *t;
    int64_t from_ms, to_ms;
    char from_h[REC_HOUR_STR_LEN + 1], to_h[REC_HOUR_STR_LEN + 1];
    rec_map_t *seen;  /* event and rejected _ids (per collection: "e"/"r" + _id) */
    rec_map_t *stats; /* stats_hourly _id -> bson_t* (heap, owned here): the last line so far */
} load_t;

static bool ts_in_range(const load_t *l, const bson_t *doc)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, "ts") || !BSON_ITER_HOLDS_DATE_TIME(&it))
        return true; /* the tally counts it as ignored */
    int64_t ms = bson_iter_date_time(&it);
    return ms >= l->from_ms && ms < l->to_ms;
}

/* One parsed line of file kind @p kind. */
static int take_line(load_t *l, int kind, bson_t *doc, at_err_t *err)
{
    bson_iter_t it;
    const char *id = NULL;
    uint32_t idlen = 0;
    if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_UTF8(&it))
        id = bson_iter_utf8(&it, &idlen);
    if (kind >= 2) {
        if (id == NULL)
            return rec_tally_add_rollup(l->t, doc, err); /* reports the missing _id */
        bool looks = idlen > REC_HOUR_STR_LEN && id[REC_HOUR_STR_LEN] == '|';
        if (looks && (strncmp(id, l->from_h, REC_HOUR_STR_LEN) < 0 || strncmp(id, l->to_h, REC_HOUR_STR_LEN) >= 0))
            return 0;
        bool failed;
        bson_t *copy = bson_copy(doc);
        bson_t *old = rec_map_put(l->stats, id, idlen, copy, &failed);
        bson_destroy(old);
        if (failed) {
            bson_destroy(copy);
            return at_err_set(err, AT_ERR_NOMEM, "out of memory");
        }
        return 0;
    }
    if (!ts_in_range(l, doc))
        return 0;
    if (id != NULL) {
        char key[300];
        if (idlen > sizeof(key) - 2)
            idlen = sizeof(key) - 2;
        key[0] = kind == 0 ? 'e' : 'r';
        memcpy(key + 1, id, idlen);
        int rc = rec_map_add(l->seen, key, idlen + 1, NULL, NULL);
        if (rc < 0)
            return at_err_set(err, AT_ERR_NOMEM, "out of memory");
        if (rc == 0)
            return 0; /* stored twice in the files, once in MongoDB */
    }
    return (kind == 0 ? rec_tally_add_event : rec_tally_add_rejected)(l->t, doc, err) < 0 ? -1 : 0;
}

static int read_file(load_t *l, const char *dir, const sink_file_t *f, at_err_t *err)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, f->name);
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        return at_err_set(err, AT_ERR_IO, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, fp)) > 0) {
        lineno++;
        if (line[n - 1] != '\n')
            break; /* a write in progress */
        if (n == 1)
            continue;
        bson_t doc;
        bson_error_t e;
        if (!bson_init_from_json(&doc, line, n - 1, &e)) {
            rc = at_err_set(err, AT_ERR_INVALID, "%s:%ld: not a JSON document: %s", path, lineno, e.message);
            break;
        }
        rc = take_line(l, f->kind, &doc, err);
        bson_destroy(&doc);
    }
    if (rc == 0 && ferror(fp))
        rc = at_err_set(err, AT_ERR_IO, "%s: %s", path, strerror(errno));
    free(line);
    fclose(fp);
    return rc;
}

typedef struct feed_s {
    rec_tally_t *t;
    at_err_t *err;
    int rc;
} feed_t;

static void feed_stats_cb(const char *key, size_t len, void *value, void *arg)
{
    (void)key, (void)len;
    feed_t *f = arg;
    if (f->rc == 0 && rec_tally_add_rollup(f->t, value, f->err) < 0)
        f->rc = -1;
    bson_destroy(value);
}

static int files_load(rec_store_t *s, rec_tally_t *t, int64_t from_ms, int64_t to_ms, at_err_t *err)
{
    files_store_t *fs = (files_store_t *)s;
    load_t l = {.t = t, .from_ms = from_ms, .to_ms = to_ms, .seen = rec_map_new(), .stats = rec_map_new()};
    rec_hour_str(from_ms, l.from_h);
    rec_hour_str(to_ms, l.to_h);
    int rc = l.seen && l.stats ? 0 : at_err_set(err, AT_ERR_NOMEM, "out of memory");
    for (size_t d = 0; d < fs->ndirs && rc == 0; d++) {
        sink_file_t *files = NULL;
        size_t n = 0;
        rc = list_dir(fs->dirs[d], &files, &n, err);
        for (size_t i = 0; i < n; i++) {
            if (rc == 0)
                rc = read_file(&l, fs->dirs[d], &files[i], err);
            free(files[i].name);
        }
        free(files);
    }
    feed_t f = {t, err, rc};
    if (l.stats != NULL)
        rec_map_each(l.stats, feed_stats_cb, &f); /* also frees the documents */
    rec_map_free(l.seen);
    rec_map_free(l.stats);
    return f.rc;
}

static int files_write(rec_store_t *s, bson_t *const *docs, size_t n, size_t *written, at_err_t *err)
{
    files_store_t *fs = (files_store_t *)s;
    if (written != NULL)
        *written = 0;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", fs->dirs[0], CORRECTIONS_FILE);
    /* all lines in one buffer, one write(2): a reader never sees half of a batch's lines
     * except a torn last one, which every reader skips */
    bson_string_t *buf = bson_string_new(NULL);
    for (size_t i = 0; i < n; i++) {
        char *json = bson_as_relaxed_extended_json(docs[i], NULL);
        bson_string_append(buf, json);
        bson_string_append_c(buf, '\n');
        bson_free(json);
    }
    int rc = 0;
    bool created = access(path, F_OK) != 0;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = at_err_set(err, AT_ERR_IO, "%s: %s", path, strerror(errno));
    } else {
        size_t off = 0;
        while (off < buf->len) {
            ssize_t w = write(fd, buf->str + off, buf->len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = at_err_set(err, AT_ERR_IO, "write %s: %s", path, strerror(errno));
                break;
            }
            off += (size_t)w;
        }
        if (rc == 0 && fdatasync(fd) != 0)
            rc = at_err_set(err, AT_ERR_IO, "fdatasync %s: %s", path, strerror(errno));
        close(fd);
    }
    if (rc == 0 && created) {
        /* a new file's name must survive a crash too */
        int dfd = open(fs->dirs[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            if (fsync(dfd) != 0)
                rc = at_err_set(err, AT_ERR_IO, "fsync %s: %s", fs->dirs[0], strerror(errno));
            close(dfd);
        }
    }
    bson_string_free(buf, true);
    if (rc == 0 && written != NULL)
        *written = n;
    return rc;
}

static void files_free(rec_store_t *s)
{
    files_store_t *fs = (files_store_t *)s;
    for (size_t i = 0; i < fs->ndirs; i++)
        free(fs->dirs[i]);
    free(fs->dirs);
    free(fs);
}

rec_store_t *rec_store_files_new(char *const *dirs, size_t ndirs, at_err_t *err)
{
    for (size_t i = 0; i < ndirs; i++) {
        DIR *d = opendir(dirs[i]);
        if (d == NULL) {
            at_err_set(err, AT_ERR_IO, "--data-dir %s: expected a readable directory: %s", dirs[i], strerror(errno));
            return NULL;
        }
        closedir(d);
    }
    files_store_t *fs = calloc(1, sizeof(*fs));
    if (fs == NULL || (fs->dirs = calloc(ndirs, sizeof(char *))) == NULL) {
        free(fs);
        at_err_set(err, AT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < ndirs; i++)
        fs->dirs[i] = strdup(dirs[i]);
    fs->ndirs = ndirs;
    fs->base = (rec_store_t){.step_ms = files_step_ms, .load = files_load, .write = files_write, .free = files_free};
    return &fs->base;
}
