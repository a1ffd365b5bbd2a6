/* Unit tests for collector/col_static.c: embedded assets, ETags, templates, signed click
 * URLs (checked with the same parser and HMAC check GET /c uses) and the demo pages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "at_hmac.h"
#include "col_query.h"
#include "col_static.h"

/* ---- assets ---- */

static void test_col_static_asset__tracker_is_embedded(void **state)
{
    (void)state;
    const col_asset_t *a = col_static_asset("tracker.js");
    assert_non_null(a);
    assert_true(a->len > 1000);
    assert_int_equal(a->data[a->len], 0); /* NUL after the bytes */
    assert_non_null(strstr((const char *)a->data, "sendBeacon"));
    /* "\"" + 16 hex + "\"" */
    assert_int_equal(strlen(a->etag), 18);
    assert_int_equal(a->etag[0], '"');
    assert_int_equal(a->etag[17], '"');
    assert_non_null(col_static_asset("demo/index.html"));
    assert_non_null(col_static_asset("demo/landing.html"));
    assert_null(col_static_asset("../etc/passwd"));
    assert_null(col_static_asset("tracker"));
}

static void test_col_static_asset__etags_differ_per_file(void **state)
{
    (void)state;
    assert_string_not_equal(col_static_asset("tracker.js")->etag, col_static_asset("demo/index.html")->etag);
}

/* ---- ETag / If-None-Match ---- */

static bool match(const char *inm, const char *etag)
{
    return col_static_etag_match(inm, strlen(inm), etag);
}

static void test_col_static_etag_match__exact_list_weak_and_star(void **state)
{
    (void)state;
    const char *e = "\"abc123\"";
    assert_true(match("\"abc123\"", e));
    assert_true(match("W/\"abc123\"", e)); /* If-None-Match compares weakly */
    assert_true(match("\"x\", \"abc123\"", e));
    assert_true(match("\"x\",W/\"abc123\" , \"y\"", e));
    assert_true(match("*", e));
    assert_true(match("  *  ", e));
}

static void test_col_static_etag_match__mismatches(void **state)
{
    (void)state;
    const char *e = "\"abc123\"";
    assert_false(match("", e));
    assert_false(match("abc123", e)); /* unquoted */
    assert_false(match("\"abc1234\"", e));
    assert_false(match("\"abc12\"", e));
    assert_false(match("\"x\", \"y\"", e));
    assert_false(match("W/", e));
    assert_false(match("**", e));
    assert_false(match("\"abc,123\"", "\"abc\"")); /* a comma inside quotes does not split */
}

static void test_col_static_etag_match__length_bounded(void **state)
{
    (void)state;
    /* Only len bytes are read: the tag after them is not seen. */
    const char *inm = "\"x\", \"abc123\"";
    assert_false(col_static_etag_match(inm, 3, "\"abc123\""));
    assert_true(col_static_etag_match(inm, strlen(inm), "\"abc123\""));
}

/* ---- templates ---- */

static char *render(const char *tmpl, const col_tmpl_var_t *vars, size_t n, at_err_t *err)
{
    size_t len = 0;
    char *s = col_static_render(tmpl, strlen(tmpl), vars, n, &len, err);
    if (s != NULL)
        assert_int_equal(len, strlen(s));
    return s;
}

static void test_col_static_render__substitutes_and_escapes(void **state)
{
    (void)state;
    const col_tmpl_var_t vars[] = {
        {"name", "<b>Tom & \"Jerry\"</b> 'x'", false},
        {"frag", "<i>ok</i>", true},
        {"empty", NULL, false},
    };
    at_err_t err = {0};
    char *s = render("<p title=\"{{name}}\">{{name}}</p>{{frag}}[{{empty}}]{ {not} }", vars, 3, &err);
    assert_non_null(s);
    assert_string_equal(s, "<p title=\"&lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt; &#39;x&#39;\">"
                           "&lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt; &#39;x&#39;</p><i>ok</i>[]{ {not} }");
    free(s);
}

static void test_col_static_render__no_placeholders(void **state)
{
    (void)state;
    at_err_t err = {0};
    char *s = render("plain text", NULL, 0, &err);
    assert_string_equal(s, "plain text");
    free(s);
    s = render("", NULL, 0, &err);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
}

static void test_col_static_render__unknown_placeholder_fails(void **state)
{
    (void)state;
    const col_tmpl_var_t vars[] = {{"a", "1", false}};
    at_err_t err = {0};
    assert_null(render("x {{b}} y", vars, 1, &err));
    assert_non_null(strstr(err.msg, "{{b}}"));
    assert_null(render("x {{ab}}", vars, 1, &err)); /* prefix of a name is not the name */
}

static void test_col_static_render__unterminated_fails(void **state)
{
    (void)state;
    const col_tmpl_var_t vars[] = {{"a", "1", false}};
    at_err_t err = {0};
    assert_null(render("x {{a", vars, 1, &err));
    assert_non_null(strstr(err.msg, "unterminated"));
    assert_null(render("x {{a}", vars, 1, &err));
    assert_null(render("{{", vars, 1, &err));
}

/* ---- signed click URLs ---- */

/* Parses @p url ("/c?...") exactly as GET /c does and checks the signature the same way. */
static void assert_click_verifies(const char *url, const char *key, const char *want_d, const char *want_c)
{
    assert_memory_equal(url, "/c?", 3);
    const char *q = url + 3;
    size_t qlen = strlen(q);
    char *buf = malloc(qlen + 1);
    at_event_t ev = {0};
    col_query_t cq = {0};
    at_err_t err = {0};
    assert_int_equal(col_query_parse(q, qlen, &ev, &cq, buf, qlen + 1, &err), AT_REJ_NONE);
    assert_int_equal(ev.d.len, strlen(want_d));
    assert_memory_equal(ev.d.p, want_d, ev.d.len);
    assert_int_equal(ev.c.len, strlen(want_c));
    assert_memory_equal(ev.c.p, want_c, ev.c.len);
    assert_true(at_hmac_verify(key, strlen(key), ev.d.p, ev.d.len, cq.sig.p, cq.sig.len));
    assert_false(at_hmac_verify("other-key", 9, ev.d.p, ev.d.len, cq.sig.p, cq.sig.len));
    free(buf);
}

static void test_col_static_click_url__roundtrips_through_the_c_parser(void **state)
{
    (void)state;
    const char *dest = "http://127.0.0.1:8080/demo/landing?c=camp-acme-spring&x=a b/é#frag";
    char url[1024];
    at_err_t err = {0};
    assert_int_equal(col_static_click_url("k3y", "camp-acme-spring", "cr-1", "pub-dailynews", "pl-top", dest, url,
                                          sizeof(url), &err),
                     0);
    assert_non_null(strstr(url, "&cr=cr-1&p=pub-dailynews&pl=pl-top&"));
    assert_null(strchr(url, ' '));
    assert_null(strchr(url, '#'));
    assert_click_verifies(url, "k3y", dest, "camp-acme-spring");
}

static void test_col_static_click_url__optional_fields_and_errors(void **state)
{
    (void)state;
    char url[256];
    at_err_t err = {0};
    assert_int_equal(col_static_click_url("k", "c1", NULL, NULL, NULL, "https://a.example/", url, sizeof(url), &err),
                     0);
    assert_null(strstr(url, "cr="));
    assert_click_verifies(url, "k", "https://a.example/", "c1");

    assert_int_equal(col_static_click_url("", "c1", NULL, NULL, NULL, "https://a.example/", url, sizeof(url), &err),
                     -1);
    assert_non_null(strstr(err.msg, "click-key"));
    assert_int_equal(col_static_click_url(NULL, "c1", NULL, NULL, NULL, "https://a.example/", url, sizeof(url), &err),
                     -1);
    char tiny[40];
    assert_int_equal(col_static_click_url("k", "c1", NULL, NULL, NULL, "https://a.example/", tiny, sizeof(tiny), &err),
                     -1);
    assert_int_equal(err.code, AT_ERR_TOO_LARGE);
}

static void test_col_static_authority_ok__cases(void **state)
{
    (void)state;
    const char *good[] = {"localhost", "127.0.0.1:8080", "[::1]:8080", "demo.example.com"};
    const char *bad[] = {"", "a b", "evil\"host", "a/b", "a<b", "host\r\nx: y", "a@b"};
    for (size_t i = 0; i < AT_ARRAY_LEN(good); i++)
        assert_true(col_static_authority_ok(good[i], strlen(good[i])));
    for (size_t i = 0; i < AT_ARRAY_LEN(bad); i++)
        assert_false(col_static_authority_ok(bad[i], strlen(bad[i])));
    char longhost[300];
    memset(longhost, 'a', sizeof(longhost));
    assert_false(col_static_authority_ok(longhost, sizeof(longhost)));
}

/* ---- demo pages ---- */

/* The href of the element with id="<id>"'s first link, HTML-unescaped (&amp; -> &). */
static void slot_href(const char *page, const char *id, char *out, size_t cap)
{
    char needle[64];
    snprintf(needle, sizeof(needle), "id=\"%s\"", id);
    const char *at = strstr(page, needle);
    assert_non_null(at);
    const char *h = strstr(at, "href=\"");
    assert_non_null(h);
    h += 6;
    size_t o = 0;
    for (; *h != '"' && o + 1 < cap; h++) {
        if (strncmp(h, "&amp;", 5) == 0) {
            out[o++] = '&';
            h += 4;
        } else {
            out[o++] = *h;
        }
    }
    out[o] = '\0';
}

static void test_col_static_demo_page__slots_with_signed_links(void **state)
{
    (void)state;
    at_err_t err = {0};
    size_t len = 0;
    char *page = col_static_demo_page("demo-key", "http://127.0.0.1:9999", &len, &err);
    assert_non_null(page);
    assert_int_equal(len, strlen(page));
    assert_null(strstr(page, "{{")); /* every placeholder filled */
    assert_non_null(strstr(page, "Daily News"));
    assert_non_null(strstr(page, "pub-dailynews"));
    assert_non_null(strstr(page, "<script async src=\"/tracker.js\""));
    const struct {
        const char *id, *c;
    } slots[] = {{"ad-top", "camp-acme-spring"},
                 {"ad-side", "camp-acme-retarget"},
                 {"ad-inline", "camp-acme-spring"},
                 {"ad-bottom", "camp-acme-retarget"}};
    for (size_t i = 0; i < AT_ARRAY_LEN(slots); i++) {
        char href[1024], dest[128];
        slot_href(page, slots[i].id, href, sizeof(href));
        snprintf(dest, sizeof(dest), "http://127.0.0.1:9999/demo/landing?c=%s", slots[i].c);
        assert_click_verifies(href, "demo-key", dest, slots[i].c);
    }
    /* the bottom slot comes after enough text to be below the fold */
    assert_true(strstr(page, "id=\"ad-bottom\"") - strstr(page, "id=\"ad-top\"") > 5000);
    free(page);
}

static void test_col_static_demo_page__needs_a_key(void **state)
{
    (void)state;
    at_err_t err = {0};
    assert_null(col_static_demo_page("", "http://h", NULL, &err));
    assert_non_null(strstr(err.msg, "click-key"));
}

static char *landing(const char *q)
{
    at_err_t err = {0};
    size_t len = 0;
    char *page = col_static_demo_landing(q, strlen(q), &len, &err);
    assert_non_null(page);
    assert_null(strstr(page, "{{"));
    return page;
}

static void test_col_static_demo_landing__names_the_campaign(void **state)
{
    (void)state;
    char *p = landing("x=1&c=camp-acme-spring");
    assert_non_null(strstr(p, "You arrived from campaign camp-acme-spring"));
    assert_non_null(strstr(p, "Spring running shoes"));
    free(p);
    p = landing("c=camp-other");
    assert_non_null(strstr(p, "You arrived from campaign camp-other"));
    assert_non_null(strstr(p, "not one of the demo"));
    free(p);
}

static void test_col_static_demo_landing__hostile_or_missing_c(void **state)
{
    (void)state;
    const char *qs[] = {"", "c=", "c=%3Cscript%3Ealert(1)%3C%2Fscript%3E", "c=%ZZ", "c=a%22b"};
    for (size_t i = 0; i < AT_ARRAY_LEN(qs); i++) {
        char *p = landing(qs[i]);
        assert_non_null(strstr(p, "You arrived from campaign (none)"));
        /* The page's own three scripts (the tracker stub, tracker.js, the buy button), none injected. */
        size_t nscript = 0;
        for (const char *at = p; (at = strstr(at, "<script")) != NULL; at++)
            nscript++;
        assert_int_equal(nscript, 3);
        assert_null(strstr(p, "alert(1)"));
        assert_null(strstr(p, "a\"b"));
        free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_col_static_asset__tracker_is_embedded),
        cmocka_unit_test(test_col_static_asset__etags_differ_per_file),
        cmocka_unit_test(test_col_static_etag_match__exact_list_weak_and_star),
        cmocka_unit_test(test_col_static_etag_match__mismatches),
        cmocka_unit_test(test_col_static_etag_match__length_bounded),
        cmocka_unit_test(test_col_static_render__substitutes_and_escapes),
        cmocka_unit_test(test_col_static_render__no_placeholders),
        cmocka_unit_test(test_col_static_render__unknown_placeholder_fails),
        cmocka_unit_test(test_col_static_render__unterminated_fails),
        cmocka_unit_test(test_col_static_click_url__roundtrips_through_the_c_parser),
        cmocka_unit_test(test_col_static_click_url__optional_fields_and_errors),
        cmocka_unit_test(test_col_static_authority_ok__cases),
        cmocka_unit_test(test_col_static_demo_page__slots_with_signed_links),
        cmocka_unit_test(test_col_static_demo_page__needs_a_key),
        cmocka_unit_test(test_col_static_demo_landing__names_the_campaign),
        cmocka_unit_test(test_col_static_demo_landing__hostile_or_missing_c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
