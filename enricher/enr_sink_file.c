/*
 * enr_sink_file.c: the embedded file sink (see enr_sink.h).
 *
 * Layout: <dir>/events-<seq>.jsonl and <dir>/rejected-<seq>.jsonl, <seq> a decimal number
 * from 1, one relaxed Extended JSON document per line, each with "_id" first. That is what
 * `mongoimport --db adtrack --collection events --type json --file events-1.jsonl` reads
 * unchanged (dates as {"$date": ...}, 64-bit integers as plain numbers).
 *
 * Durability: one write(2) of all new lines of a batch per file, then fdatasync(2); write()
 * returns 0 only after that. A new file is created with its directory entry fsynced.
 *
 * Idempotency: the sink remembers the _ids of the current and the previous file of each
 * kind (a hash set in memory, rebuilt on open by reading those two files), and skips a
 * document whose _id it has seen. So a batch written again after a failure, a rebalance
 * or a restart is stored once, as long as its first copy is in one of those two files.
 * That always holds for the enricher: offsets are committed after every batch, so only the
 * last uncommitted batch (at most --batch-size documents, far below one file of
 * --sink-rotate-bytes) can come back. A replay older than that (for example an operator
 * resetting the group's offsets by hours) would be written again; the documents keep their
 * _id, so loading the files into MongoDB still stores them once (mongoimport reports the
 * duplicate keys).
 *
 * Crash safety: a line torn by a crash mid-write was never acknowledged (the fdatasync
 * never returned), so on open the tail after the last newline is cut off.
 *
 * @locality: the worker thread that owns the sink; no locking.
 */
#include "at_fs.h"
#include "at_json.h"
#include "enr_sink.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a set of id strings (open addressing, linear probing) ----
 * The ids live in one arena; a slot holds the id's hash, offset and length, so a probe
 * compares hashes before it touches the text (the sets hold two files' worth of ids,
 * about 200,000: a pointer per slot to a separately allocated string cost a cache miss
 * and a strlen per probe). */

typedef struct idslot_s {
    uint64_t hash; /* 0: free (real hashes are made odd) */
    uint32_t off, len;
} idslot_t;

typedef struct idset_s {
    idslot_t *slots;
    size_t cap; /* power of two */
    size_t n;
    char *text;
    size_t used, text_cap;
} idset_t;

static uint64_t str_hash(const char *s, size_t len)
{
    uint64_t h = UINT64_C(1469598103934665603);
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= UINT64_C(1099511628211);
    }
    return (h ^ (h >> 31)) | 1;
}

static void idset_clear(idset_t *s)
{
    free(s->slots);
    free(s->text);
    memset(s, 0, sizeof(*s));
}

/* Empties @p s, keeping its memory. */
static void idset_reset(idset_t *s)
{
    if (s->n > 0)
        memset(s->slots, 0, s->cap * sizeof(*s->slots));
    s->n = 0;
    s->used = 0;
}

static bool idset_has_h(const idset_t *s, const char *id, size_t len, uint64_t h)
{
    if (s->cap == 0)
        return false;
    for (size_t i = (size_t)h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        const idslot_t *x = &s->slots[i];
        if (x->hash == 0)
            return false;
        if (x->hash == h && x->len == len && memcmp(s->text + x->off, id, len) == 0)
            return true;
    }
}

static int idset_add_h(idset_t *s, const char *id, size_t len, uint64_t h)
{
    if (len > UINT32_MAX || s->used + len > UINT32_MAX)
        return -1;
    if ((s->n + 1) * 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 1024;
        idslot_t *ns = calloc(ncap, sizeof(*ns));
        if (ns == NULL)
            return -1;
        for (size_t i = 0; i < s->cap; i++) {
            if (s->slots[i].hash == 0)
                continue;
            size_t j = (size_t)s->slots[i].hash & (ncap - 1);
            while (ns[j].hash != 0)
                j = (j + 1) & (ncap - 1);
            ns[j] = s->slots[i];
        }
        free(s->slots);
        s->slots = ns;
        s->cap = ncap;
    }
    size_t i = (size_t)h & (s->cap - 1);
    while (s->slots[i].hash != 0) {
        const idslot_t *x = &s->slots[i];
        if (x->hash == h && x->len == len && memcmp(s->text + x->off, id, len) == 0)
            return 0;
        i = (i + 1) & (s->cap - 1);
    }
    if (s->used + len > s->text_cap) {
        size_t nc = s->text_cap ? s->text_cap * 2 : 65536;
        while (nc < s->used + len)
            nc *= 2;
        char *nt = realloc(s->text, nc);
        if (nt == NULL)
            return -1;
        s->text = nt;
        s->text_cap = nc;
    }
    memcpy(s->text + s->used, id, len);
    s->slots[i] = (idslot_t){h, (uint32_t)s->used, (uint32_t)len};
    s->used += len;
    s->n++;
    return 0;
}

static int idset_add(idset_t *s, const char *id, size_t len)
{
    return idset_add_h(s, id, len, str_hash(id, len));
}

/* ---- the sink ---- */

typedef struct file_kind_s {
    const char *prefix; /* "events" or "rejected" */
    int fd;
    uint64_t seq;
    int64_t size;
    idset_t cur, prev;
} file_kind_t;

typedef struct file_sink_s {
    enr_sink_t super;
    char *dir;
    int64_t rotate_bytes;
    file_kind_t kinds[2];
    char *buf;
    size_t bufcap;
    idset_t batch; /* ids new in the current write, kept between calls for its memory */
} file_sink_t;

static void path_of(const file_sink_t *fs, const file_kind_t *k, uint64_t seq, char *out, size_t size)
{
    snprintf(out, size, "%s/%s-%llu.jsonl", fs->dir, k->prefix, (unsigned long long)seq);
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* The _id of one line: fast path for what libbson writes ({ "_id" : "..." ...), else a
 * full parse. Returns a pointer into @p line or into @p tmp, or NULL. */
static const char *line_id(const char *line, size_t len, size_t *idlen, char *tmp, size_t tmpsize)
{
    static const char pre[] = "{ \"_id\" : \"";
    if (len > sizeof(pre) - 1 && memcmp(line, pre, sizeof(pre) - 1) == 0) {
        const char *s = line + sizeof(pre) - 1;
        const char *q = memchr(s, '"', len - (size_t)(s - line));
        if (q != NULL && memchr(s, '\\', (size_t)(q - s)) == NULL) {
            *idlen = (size_t)(q - s);
            return s;
        }
    }
    bson_error_t berr;
    bson_t doc;
    if (!bson_init_from_json(&doc, line, (ssize_t)len, &berr))
        return NULL;
    bson_iter_t it;
    const char *res = NULL;
    if (bson_iter_init_find(&it, &doc, "_id") && BSON_ITER_HOLDS_UTF8(&it)) {
        uint32_t n;
        const char *s = bson_iter_utf8(&it, &n);
        if (n < tmpsize) {
            memcpy(tmp, s, n);
            *idlen = n;
            res = tmp;
        }
    }
    bson_destroy(&doc);
    return res;
}

/* Adds the ids of file @p path to @p set; with @p repair, cuts a torn last line. */
static int load_ids(const char *path, idset_t *set, bool repair, int64_t *size_out, at_err_t *err)
{
    int fd = open(path, (repair ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return at_err_set(err, AT_ERR_IO, "file sink: open %s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return at_err_set(err, AT_ERR_IO, "file sink: stat %s: %s", path, strerror(errno));
    }
    size_t size = (size_t)st.st_size;
    char *data = malloc(size + 1);
    size_t got = 0;
    while (data != NULL && got < size) {
        ssize_t r = pread(fd, data + got, size - got, (off_t)got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (data == NULL || got < size) {
        free(data);
        close(fd);
        return at_err_set(err, AT_ERR_IO, "file sink: read %s failed", path);
    }
    size_t good = 0, start = 0;
    char tmp[512];
    for (size_t i = 0; i < size; i++) {
        if (data[i] != '\n')
            continue;
        size_t idlen;
        const char *id = line_id(data + start, i - start, &idlen, tmp, sizeof(tmp));
        if (id != NULL && idset_add(set, id, idlen) != 0) {
            free(data);
            close(fd);
            return at_err_set(err, AT_ERR_NOMEM, "file sink: out of memory");
        }
        start = i + 1;
        good = i + 1;
    }
    free(data);
    if (repair && good < size) {
        /* A torn tail: its fdatasync never completed, so nobody was told it was stored. */
        if (ftruncate(fd, (off_t)good) != 0 || fsync(fd) != 0) {
            close(fd);
            return at_err_set(err, AT_ERR_IO, "file sink: truncate %s: %s", path, strerror(errno));
        }
    }
    if (size_out != NULL)
        *size_out = (int64_t)good;
    close(fd);
    return 0;
}

static int open_current(file_sink_t *fs, file_kind_t *k, at_err_t *err)
{
    char path[4200];
    path_of(fs, k, k->seq, path, sizeof(path));
    bool existed = access(path, F_OK) == 0;
    k->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (k->fd < 0)
        return at_err_set(err, AT_ERR_IO, "file sink: open %s: %s", path, strerror(errno));
    if (!existed)
        fsync_dir(fs->dir);
    return 0;
}

static int kind_open(file_sink_t *fs, file_kind_t *k, at_err_t *err)
{
    DIR *d = opendir(fs->dir);
    if (d == NULL)
        return at_err_set(err, AT_ERR_IO, "file sink: %s: %s", fs->dir, strerror(errno));
    size_t plen = strlen(k->prefix);
    struct dirent *de;
    uint64_t max = 0;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strncmp(n, k->prefix, plen) != 0 || n[plen] != '-')
            continue;
        char *end = NULL;
        unsigned long long seq = strtoull(n + plen + 1, &end, 10);
        if (end != NULL && strcmp(end, ".jsonl") == 0 && seq > max)
            max = seq;
    }
    closedir(d);
    k->seq = max > 0 ? max : 1;
    char path[4200];
    if (k->seq > 1) {
        path_of(fs, k, k->seq - 1, path, sizeof(path));
        if (load_ids(path, &k->prev, false, NULL, err) != 0)
            return -1;
    }
    path_of(fs, k, k->seq, path, sizeof(path));
    k->size = 0;
    if (load_ids(path, &k->cur, true, &k->size, err) != 0)
        return -1;
    return open_current(fs, k, err);
}

static int rotate(file_sink_t *fs, file_kind_t *k, at_err_t *err)
{
    close(k->fd);
    k->fd = -1;
    idset_clear(&k->prev);
    k->prev = k->cur;
    memset(&k->cur, 0, sizeof(k->cur));
    k->seq++;
    k->size = 0;
    return open_current(fs, k, err);
}

static int buf_reserve(file_sink_t *fs, size_t need)
{
    if (need <= fs->bufcap)
        return 0;
    size_t ncap = fs->bufcap ? fs->bufcap : 65536;
    while (ncap < need)
        ncap *= 2;
    char *nb = realloc(fs->buf, ncap);
    if (nb == NULL)
        return -1;
    fs->buf = nb;
    fs->bufcap = ncap;
    return 0;
}

/* Appends document @p i (of @p docs or @p lines, whichever is given) with its newline to
 * the buffer, unless its id is known; counts what it did in @p res. */
static int append_doc(file_sink_t *fs, file_kind_t *k, const bson_t *const *docs, const enr_line_t *lines, size_t i,
                      size_t *used, enr_sink_result_t *res, at_err_t *err)
{
    const char *id;
    size_t idlen;
    if (lines != NULL) {
        id = lines[i].id;
        idlen = lines[i].idlen;
    } else {
        bson_iter_t it;
        uint32_t n;
        if (!bson_iter_init_find(&it, docs[i], "_id") || !BSON_ITER_HOLDS_UTF8(&it))
            return at_err_set(err, AT_ERR_INVALID, "file sink: document %zu has no string _id", i);
        id = bson_iter_utf8(&it, &n);
        idlen = n;
    }
    uint64_t h = str_hash(id, idlen);
    if (idset_has_h(&k->cur, id, idlen, h) || idset_has_h(&k->prev, id, idlen, h) ||
        idset_has_h(&fs->batch, id, idlen, h)) {
        res->duplicates++;
        return 0;
    }
    if (lines != NULL) {
        if (buf_reserve(fs, *used + lines[i].len + 1) != 0)
            return at_err_set(err, AT_ERR_NOMEM, "file sink: out of memory");
        memcpy(fs->buf + *used, lines[i].json, lines[i].len);
        *used += lines[i].len;
    } else if (at_json_append_relaxed(docs[i], &fs->buf, &fs->bufcap, used) != 0) {
        /* libbson's relaxed Extended JSON, written without going through libbson's
         * generic writer (at_json.h): it was about half of the worker's CPU. */
        return at_err_set(err, AT_ERR_INVALID, "file sink: document %zu cannot be written as JSON", i);
    }
    if (buf_reserve(fs, *used + 1) != 0 || idset_add_h(&fs->batch, id, idlen, h) != 0)
        return at_err_set(err, AT_ERR_NOMEM, "file sink: out of memory");
    fs->buf[(*used)++] = '\n';
    return 0;
}

/* Writes the documents of one kind new to the sink with one write(2), then fdatasync(2). */
static int write_kind(file_sink_t *fs, file_kind_t *k, const bson_t *const *docs, const enr_line_t *lines, size_t n,
                      enr_sink_result_t *res, at_err_t *err)
{
    size_t used = 0;
    enr_sink_result_t r = {0};

    if (n == 0)
        return 0;
    if (k->fd < 0 && open_current(fs, k, err) != 0)
        return -1;
    idset_reset(&fs->batch); /* ids new in this call, also to catch a repeat inside it */
    for (size_t i = 0; i < n; i++) {
        if (append_doc(fs, k, docs, lines, i, &used, &r, err) != 0)
            return -1;
    }
    if (used > 0) {
        size_t off = 0;
        while (off < used) {
            ssize_t w = write(k->fd, fs->buf + off, used - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                int e = errno;
                /* Cut what part of the batch got in: nothing was acknowledged. */
                if (ftruncate(k->fd, (off_t)k->size) != 0) {
                    /* the retry writes the batch again; the ids were not recorded */
                }
                return at_err_set(err, AT_ERR_IO, "file sink: write %s-%llu.jsonl: %s", k->prefix,
                                  (unsigned long long)k->seq, strerror(e));
            }
            off += (size_t)w;
        }
        if (fdatasync(k->fd) != 0) {
            int e = errno;
            if (ftruncate(k->fd, (off_t)k->size) != 0) {
                /* nothing more we can do; the retry writes the batch again */
            }
            return at_err_set(err, AT_ERR_IO, "file sink: fdatasync %s-%llu.jsonl: %s", k->prefix,
                              (unsigned long long)k->seq, strerror(e));
        }
        k->size += (int64_t)used;
        for (size_t i = 0; i < fs->batch.cap; i++) {
            const idslot_t *x = &fs->batch.slots[i];
            if (x->hash != 0 && idset_add_h(&k->cur, fs->batch.text + x->off, x->len, x->hash) != 0)
                return at_err_set(err, AT_ERR_NOMEM, "file sink: out of memory");
        }
        r.inserted += fs->batch.n;
    }
    res->inserted += r.inserted;
    res->duplicates += r.duplicates;
    if (k->size >= fs->rotate_bytes) {
        at_err_t rerr;
        /* The batch is stored either way; a failed open is retried by the next write. */
        (void)rotate(fs, k, &rerr);
    }
    return 0;
}

static int file_write_any(file_sink_t *fs, const bson_t *const *events, const enr_line_t *lines, size_t nevents,
                          const bson_t *const *rejected, size_t nrejected, enr_sink_result_t *res, at_err_t *err)
{
    enr_sink_result_t r = {0};
    if (write_kind(fs, &fs->kinds[0], events, lines, nevents, &r, err) != 0 ||
        write_kind(fs, &fs->kinds[1], rejected, NULL, nrejected, &r, err) != 0)
        return -1;
    if (res != NULL)
        *res = r;
    return 0;
}

static int file_write(enr_sink_t *s, const bson_t *const *events, size_t nevents, const bson_t *const *rejected,
                      size_t nrejected, enr_sink_result_t *res, at_err_t *err)
{
    return file_write_any((file_sink_t *)s, events, NULL, nevents, rejected, nrejected, res, err);
}

static int file_write_lines(enr_sink_t *s, const enr_line_t *events, size_t nevents, const bson_t *const *rejected,
                            size_t nrejected, enr_sink_result_t *res, at_err_t *err)
{
    return file_write_any((file_sink_t *)s, NULL, events, nevents, rejected, nrejected, res, err);
}

static void file_destroy(enr_sink_t *s)
{
    file_sink_t *fs = (file_sink_t *)s;
    if (fs == NULL)
        return;
    for (int i = 0; i < 2; i++) {
        if (fs->kinds[i].fd >= 0)
            close(fs->kinds[i].fd);
        idset_clear(&fs->kinds[i].cur);
        idset_clear(&fs->kinds[i].prev);
    }
    idset_clear(&fs->batch);
    free(fs->buf);
    free(fs->dir);
    free(fs);
}

static const enr_sink_ops_t file_ops = {
    .write = file_write, .write_lines = file_write_lines, .destroy = file_destroy, .name = "file"};

enr_sink_t *enr_sink_file_new(const char *dir, int64_t rotate_bytes, at_err_t *err)
{
    if (dir == NULL || dir[0] == '\0') {
        at_err_set(err, AT_ERR_INVALID, "--data-dir: expected a directory");
        return NULL;
    }
    if (at_mkdir_p(dir, 0755, NULL, 0) != 0) {
        at_err_set(err, AT_ERR_IO, "--data-dir: cannot create '%s': %s", dir, strerror(errno));
        return NULL;
    }
    file_sink_t *fs = calloc(1, sizeof(*fs));
    if (fs == NULL || (fs->dir = strdup(dir)) == NULL) {
        free(fs);
        at_err_set(err, AT_ERR_NOMEM, "file sink: out of memory");
        return NULL;
    }
    fs->super.ops = &file_ops;
    fs->rotate_bytes = rotate_bytes > 0 ? rotate_bytes : INT64_MAX;
    fs->kinds[0].prefix = "events";
    fs->kinds[1].prefix = "rejected";
    fs->kinds[0].fd = fs->kinds[1].fd = -1;
    for (int i = 0; i < 2; i++) {
        if (kind_open(fs, &fs->kinds[i], err) != 0) {
            file_destroy(&fs->super);
            return NULL;
        }
    }
    return &fs->super;
}
