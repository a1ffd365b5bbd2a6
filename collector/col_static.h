/*
 * col_static.h: what the collector serves besides events: GET /tracker.js always, and with
 * --demo-page the demo publisher page GET /demo/ and its click landing page GET
 * /demo/landing. Everything comes from files under web/ that the build embeds into the
 * binary (collector/col_embed.cmake); nothing is read from disk at run time.
 *
 * The pure parts (asset lookup, ETag comparison, template rendering, signed click URLs,
 * the demo pages) take no h2o types, so the unit tests call them directly; col_static_serve
 * is the thin h2o layer on top.
 */
#ifndef COL_STATIC_H
#define COL_STATIC_H

#include "col_server.h"

/* One embedded file. Generated into the build tree (col_assets.c); static for the
 * process's lifetime. */
typedef struct col_asset_s {
    const char *name;          /* path under web/, e.g. "tracker.js", "demo/index.html" */
    const unsigned char *data; /* the file's bytes, followed by a NUL that len does not count */
    size_t len;
    const char *etag; /* strong validator with its quotes: "\"<16 hex of SHA-256>\"" */
} col_asset_t;

/* The embedded file @p name, or NULL. The result is static. */
const col_asset_t *col_static_asset(const char *name);

/*
 * True when an If-None-Match header value (@p inm, @p len bytes) names @p etag: "*", or a
 * comma-separated list with @p etag in it, compared weakly as RFC 9110 asks for
 * If-None-Match (a W/ prefix is ignored).
 */
bool col_static_etag_match(const char *inm, size_t len, const char *etag);

/* A template variable. Values are HTML-escaped unless @p html is set, which only values
 * rendered from the project's own templates may use. */
typedef struct col_tmpl_var_s {
    const char *name;
    const char *value;
    bool html;
} col_tmpl_var_t;

/*
 * Renders @p tmpl (@p tlen bytes): every {{name}} is replaced by the value of the variable
 * of that name. An unknown or unterminated placeholder is an error (a template bug, caught
 * by the tests), so nothing half-rendered is ever served. Returns a malloc'd NUL-terminated
 * string the caller frees, its length in *@p outlen; NULL + err on a template error.
 */
char *col_static_render(const char *tmpl, size_t tlen, const col_tmpl_var_t *vars, size_t nvars, size_t *outlen,
                        at_err_t *err);

/*
 * Writes a relative click URL, "/c?c=..&cr=..&p=..&pl=..&d=<dest>&sig=<sig>", into @p out
 * (capacity @p cap), every value percent-encoded, sig = at_hmac_sign(key, dest): exactly
 * what GET /c verifies. cr, p and pl may be NULL. Returns 0, or -1 + err when the key is
 * empty or the URL does not fit.
 */
int col_static_click_url(const char *key, const char *c, const char *cr, const char *p, const char *pl,
                         const char *dest, char *out, size_t cap, at_err_t *err);

/* True when @p authority (a Host header value) is a plausible host[:port], so it may be
 * put into a signed destination URL: 1-255 bytes of [A-Za-z0-9.:-] and IPv6 brackets. */
bool col_static_authority_ok(const char *authority, size_t len);

/*
 * The demo publisher page: an article on the demo publisher with its ad slots, each slot
 * linking to a /c URL signed with @p click_key whose destination is
 * @p origin + "/demo/landing?c=<campaign>" (@p origin: "http://host:port", no slash at the
 * end). Returns a malloc'd page the caller frees, or NULL + err (no click key).
 */
char *col_static_demo_page(const char *click_key, const char *origin, size_t *outlen, at_err_t *err);

/* The landing page for query string @p query (without '?'; may be empty): names the
 * campaign given in c. Returns a malloc'd page the caller frees, or NULL + err. */
char *col_static_demo_landing(const char *query, size_t qlen, size_t *outlen, at_err_t *err);

/*
 * Answers GET/HEAD /tracker.js, and with --demo-page /demo/, /demo/landing and 404 for
 * other /demo/ paths. Returns 0 when it answered, -1 when the path is not one of these
 * (the caller goes on routing). @locality: the loop thread that owns @p req.
 */
int col_static_serve(col_server_t *srv, h2o_req_t *req, uint64_t start_ns);

#endif
