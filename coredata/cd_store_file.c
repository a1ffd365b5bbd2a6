/*
 * cd_store_file.c: the embedded store, used when no --mongo URI is given.
 *
 * <dir>/campaigns.json and <dir>/publishers.json hold one document per line (relaxed
 * Extended JSON, the contract's shape plus "_id" = id), so `mongoimport --collection
 * campaigns --file campaigns.json` loads them into the MongoDB layout unchanged.
 *
 * Every put rewrites the kind's file atomically: write <dir>/.campaigns.json.tmp, fsync it,
 * rename it over campaigns.json, fsync the directory. A crash leaves either the old or the
 * new file, never a mix; a leftover temp file is ignored (and removed) at load. The whole
 * file is rewritten per change, which is fine for core data (thousands of entities, a few
 * changes per second); the fsyncs, not the size, bound the write rate.
 *
 * @locality: one thread at a time (the core worker owns the store).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "at_fs.h"
#include "cd_doc.h"
#include "cd_store.h"

typedef struct file_entry_s {
    char *id;
    int64_t version;
    char *line; /* JSON text without newline */
    size_t len;
} file_entry_t;

typedef struct file_store_s {
    cd_store_t base;
    char *dir;
    file_entry_t *items[2]; /* sorted by id */
    size_t count[2], cap[2];
} file_store_t;

static const char *file_name(cd_kind_t kind)
{
    return kind == CD_KIND_CAMPAIGN ? "campaigns.json" : "publishers.json";
}

static size_t lower(file_store_t *fs, cd_kind_t kind, const char *id)
{
    size_t lo = 0, hi = fs->count[kind];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(fs->items[kind][mid].id, id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The stored line for @p doc: {"_id": id, ...doc}. bson_free() the result. */
static char *doc_line(const bson_t *doc, const char *id, size_t *len)
{
    bson_t d = BSON_INITIALIZER;
    bson_iter_t it;
    BSON_APPEND_UTF8(&d, "_id", id);
    if (bson_iter_init(&it, doc))
        while (bson_iter_next(&it))
            if (strcmp(bson_iter_key(&it), "_id") != 0)
                bson_append_iter(&d, bson_iter_key(&it), -1, &it);
    char *json = bson_as_relaxed_extended_json(&d, len);
    bson_destroy(&d);
    return json;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes the kind's file from items, with entry @p repl_idx replaced by @p line (or
 * inserted before it when @p insert). */
static int rewrite(file_store_t *fs, cd_kind_t kind, size_t idx, bool insert, const char *line, size_t len,
                   at_err_t *err)
{
    char tmp[4096], final[4096];
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", fs->dir, file_name(kind));
    snprintf(final, sizeof(final), "%s/%s", fs->dir, file_name(kind));

    size_t total = len + 1;
    for (size_t i = 0; i < fs->count[kind]; i++)
        total += fs->items[kind][i].len + 1;
    char *buf = malloc(total + 1);
    if (buf == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "file store: out of memory");
    size_t off = 0;
    for (size_t i = 0; i <= fs->count[kind]; i++) {
        if (i == idx) {
            memcpy(buf + off, line, len);
            off += len;
            buf[off++] = '\n';
            if (!insert)
                continue;
        }
        if (i == fs->count[kind])
            break;
        memcpy(buf + off, fs->items[kind][i].line, fs->items[kind][i].len);
        off += fs->items[kind][i].len;
        buf[off++] = '\n';
    }

    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(buf);
        return at_err_set(err, AT_ERR_IO, "file store: open %s: %s", tmp, strerror(errno));
    }
    if (write_all(fd, buf, off) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        free(buf);
        return at_err_set(err, AT_ERR_IO, "file store: write %s: %s", tmp, strerror(e));
    }
    free(buf);
    if (close(fd) != 0 || rename(tmp, final) != 0) {
        int e = errno;
        unlink(tmp);
        return at_err_set(err, AT_ERR_IO, "file store: replace %s: %s", final, strerror(e));
    }
    /* The rename is durable only once the directory entry is. */
    int dfd = open(fs->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        int e = errno;
        if (dfd >= 0)
            close(dfd);
        return at_err_set(err, AT_ERR_IO, "file store: fsync %s: %s", fs->dir, strerror(e));
    }
    close(dfd);
    return 0;
}

static int file_put(cd_store_t *s, cd_kind_t kind, const bson_t *doc, bool *applied, at_err_t *err)
{
    file_store_t *fs = (file_store_t *)s;
    char id[CD_ID_MAX + 1];
    int64_t v = cd_doc_int64(doc, "version", -1);
    *applied = false;
    cd_doc_utf8(doc, "id", id, sizeof(id));
    if (id[0] == '\0' || v < 0)
        return at_err_set(err, AT_ERR_INVALID, "file store: document without id or version");

    size_t i = lower(fs, kind, id);
    bool exists = i < fs->count[kind] && strcmp(fs->items[kind][i].id, id) == 0;
    if (exists && fs->items[kind][i].version >= v)
        return 0; /* stale: not an error */
    size_t len;
    char *line = doc_line(doc, id, &len);
    if (line == NULL)
        return at_err_set(err, AT_ERR_INVALID, "file store: document cannot be serialised");
    if (!exists && fs->count[kind] == fs->cap[kind]) {
        size_t ncap = fs->cap[kind] ? fs->cap[kind] * 2 : 64;
        file_entry_t *n = realloc(fs->items[kind], ncap * sizeof(*n));
        if (n == NULL) {
            bson_free(line);
            return at_err_set(err, AT_ERR_NOMEM, "file store: out of memory");
        }
        fs->items[kind] = n;
        fs->cap[kind] = ncap;
    }
    if (rewrite(fs, kind, i, !exists, line, len, err) != 0) {
        bson_free(line);
        return -1;
    }
    if (exists) {
        bson_free(fs->items[kind][i].line);
    } else {
        memmove(&fs->items[kind][i + 1], &fs->items[kind][i], (fs->count[kind] - i) * sizeof(file_entry_t));
        fs->count[kind]++;
        fs->items[kind][i].id = strdup(id);
    }
    fs->items[kind][i].version = v;
    fs->items[kind][i].line = line;
    fs->items[kind][i].len = len;
    *applied = true;
    return 0;
}

static int load_kind(file_store_t *fs, cd_kind_t kind, cd_store_load_cb cb, void *opaque, at_err_t *err)
{
    char path[4096], tmp[4096];
    snprintf(path, sizeof(path), "%s/%s", fs->dir, file_name(kind));
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", fs->dir, file_name(kind));
    /* A temp file is a write that never got renamed: it was never acknowledged. */
    unlink(tmp);

    FILE *f = fopen(path, "re");
    if (f == NULL) {
        if (errno == ENOENT)
            return 0;
        return at_err_set(err, AT_ERR_IO, "file store: open %s: %s", path, strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0)
            continue;
        bson_t raw, doc = BSON_INITIALIZER;
        bson_error_t berr;
        if (!bson_init_from_json(&raw, line, n, &berr)) {
            rc = at_err_set(err, AT_ERR_INVALID, "file store: %s line %ld: %s", path, lineno, berr.message);
            bson_destroy(&doc);
            break;
        }
        bson_iter_t it;
        bson_iter_init(&it, &raw);
        while (bson_iter_next(&it))
            if (strcmp(bson_iter_key(&it), "_id") != 0)
                bson_append_iter(&doc, bson_iter_key(&it), -1, &it);
        bson_destroy(&raw);
        char id[CD_ID_MAX + 1];
        int64_t v = cd_doc_int64(&doc, "version", -1);
        cd_doc_utf8(&doc, "id", id, sizeof(id));
        if (!cd_id_valid(id, strlen(id)) || v < 0) {
            rc = at_err_set(err, AT_ERR_INVALID, "file store: %s line %ld: expected a document with id and version",
                            path, lineno);
            bson_destroy(&doc);
            break;
        }
        size_t i = lower(fs, kind, id);
        bool exists = i < fs->count[kind] && strcmp(fs->items[kind][i].id, id) == 0;
        if (!exists || fs->items[kind][i].version < v) {
            size_t len;
            char *canon = doc_line(&doc, id, &len);
            if (exists) {
                bson_free(fs->items[kind][i].line);
            } else {
                if (fs->count[kind] == fs->cap[kind]) {
                    size_t ncap = fs->cap[kind] ? fs->cap[kind] * 2 : 64;
                    fs->items[kind] = realloc(fs->items[kind], ncap * sizeof(file_entry_t));
                    if (fs->items[kind] == NULL)
                        abort();
                    fs->cap[kind] = ncap;
                }
                memmove(&fs->items[kind][i + 1], &fs->items[kind][i], (fs->count[kind] - i) * sizeof(file_entry_t));
                fs->count[kind]++;
                fs->items[kind][i].id = strdup(id);
            }
            fs->items[kind][i].version = v;
            fs->items[kind][i].line = canon;
            fs->items[kind][i].len = len;
            cb(kind, &doc, opaque);
        }
        bson_destroy(&doc);
    }
    free(line);
    fclose(f);
    return rc;
}

static int file_load(cd_store_t *s, cd_store_load_cb cb, void *opaque, at_err_t *err)
{
    file_store_t *fs = (file_store_t *)s;
    if (load_kind(fs, CD_KIND_CAMPAIGN, cb, opaque, err) != 0)
        return -1;
    return load_kind(fs, CD_KIND_PUBLISHER, cb, opaque, err);
}

static void file_destroy(cd_store_t *s)
{
    file_store_t *fs = (file_store_t *)s;
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < fs->count[k]; i++) {
            free(fs->items[k][i].id);
            bson_free(fs->items[k][i].line);
        }
        free(fs->items[k]);
    }
    free(fs->dir);
    free(fs);
}

static const cd_store_ops_t file_ops = {
    .load = file_load,
    .put = file_put,
    .destroy = file_destroy,
    .name = "file",
};

/* mkdir -p, naming the component that could not be created. */
static int mkdirs(const char *dir, at_err_t *err)
{
    char failed[4096];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof(failed))
        return at_err_set(err, AT_ERR_INVALID, "--data-dir: expected a directory path of 1 to 4095 bytes");
    if (at_mkdir_p(dir, 0755, failed, sizeof(failed)) != 0)
        return at_err_set(err, AT_ERR_IO, "--data-dir: mkdir %s: %s", failed, strerror(errno));
    return 0;
}

cd_store_t *cd_store_file_new(const char *dir, at_err_t *err)
{
    if (mkdirs(dir, err) != 0)
        return NULL;
    if (access(dir, W_OK | X_OK) != 0) {
        at_err_set(err, AT_ERR_IO, "--data-dir %s: not writable: %s", dir, strerror(errno));
        return NULL;
    }
    file_store_t *fs = calloc(1, sizeof(*fs));
    if (fs == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "file store: out of memory");
        return NULL;
    }
    fs->base.ops = &file_ops;
    fs->dir = strdup(dir);
    return &fs->base;
}
