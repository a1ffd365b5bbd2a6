/*
 * lt_json.h: a minimal streaming JSON writer into an lt_buf_t, for the reports.
 *
 * Keeps track of commas and nesting; keys are written only inside objects (pass NULL in
 * arrays). Non-finite doubles are written as null. Strings are escaped; bytes >= 0x80 are
 * passed through when they form valid UTF-8, otherwise replaced by U+FFFD.
 */
#ifndef LT_JSON_H
#define LT_JSON_H

#include "lt_buf.h"

#define LT_JSON_DEPTH 32

typedef struct lt_json_s {
    lt_buf_t *b;
    int depth;
    bool need_comma[LT_JSON_DEPTH];
    bool pretty;
} lt_json_t;

void lt_json_init(lt_json_t *j, lt_buf_t *b, bool pretty);
void lt_json_obj(lt_json_t *j, const char *key);
void lt_json_arr(lt_json_t *j, const char *key);
void lt_json_end_obj(lt_json_t *j);
void lt_json_end_arr(lt_json_t *j);
void lt_json_str(lt_json_t *j, const char *key, const char *v);
void lt_json_strn(lt_json_t *j, const char *key, const char *v, size_t n);
void lt_json_u64(lt_json_t *j, const char *key, uint64_t v);
void lt_json_i64(lt_json_t *j, const char *key, int64_t v);
void lt_json_dbl(lt_json_t *j, const char *key, double v);
void lt_json_bool(lt_json_t *j, const char *key, bool v);
void lt_json_null(lt_json_t *j, const char *key);

/* Escapes @p n bytes as a JSON string body (no quotes), replacing invalid UTF-8. */
void lt_json_escape(lt_buf_t *b, const char *s, size_t n);

#endif
