/* Unit tests for enricher/enr_ua.c: browser family, device class, bot patterns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>

#include "enr_ua.h"

static enr_ua_info_t classify(const enr_ua_t *ua, const char *s)
{
    enr_ua_info_t info;
    enr_ua_classify(ua, s, strlen(s), &info);
    return info;
}

static void test_enr_ua_classify__families_and_devices(void **state)
{
    AT_UNUSED(state);
    at_err_t err;
    enr_ua_t *ua = enr_ua_new(NULL, &err);
    struct {
        const char *s;
        enr_ua_family_t f;
        enr_device_t d;
    } cases[] = {
        {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
         "Safari/537.36",
         ENR_UA_CHROME, ENR_DEV_DESKTOP},
        {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
         "Safari/537.36 Edg/120.0.2210.91",
         ENR_UA_EDGE, ENR_DEV_DESKTOP},
        {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
         "Safari/537.36 OPR/106.0.0.0",
         ENR_UA_OPERA, ENR_DEV_DESKTOP},
        {"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", ENR_UA_FIREFOX,
         ENR_DEV_DESKTOP},
        {"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 "
         "Safari/605.1.15",
         ENR_UA_SAFARI, ENR_DEV_DESKTOP},
        {"Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
         "Version/17.2 Mobile/15E148 Safari/604.1",
         ENR_UA_SAFARI, ENR_DEV_MOBILE},
        {"Mozilla/5.0 (iPad; CPU OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0 "
         "Mobile/15E148 Safari/604.1",
         ENR_UA_CHROME, ENR_DEV_TABLET},
        {"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile "
         "Safari/537.36",
         ENR_UA_CHROME, ENR_DEV_MOBILE},
        {"Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 "
         "Safari/537.36",
         ENR_UA_CHROME, ENR_DEV_TABLET},
        {"Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0", ENR_UA_FIREFOX, ENR_DEV_MOBILE},
        {"SomethingElse/1.0", ENR_UA_OTHER, ENR_DEV_DESKTOP},
        {"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", ENR_UA_OTHER, ENR_DEV_BOT},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enr_ua_info_t info = classify(ua, cases[i].s);
        if (info.family != cases[i].f || info.device != cases[i].d)
            fail_msg("case %zu (%s): got %s/%s", i, cases[i].s, enr_ua_family_str(info.family),
                     enr_device_str(info.device));
    }
    enr_ua_info_t none = classify(ua, "");
    assert_int_equal(none.device, ENR_DEV_UNKNOWN);
    assert_false(none.bot);
    enr_ua_destroy(ua);
}

static void test_enr_ua_classify__default_bots(void **state)
{
    AT_UNUSED(state);
    at_err_t err;
    enr_ua_t *ua = enr_ua_new(NULL, &err);
    const char *bots[] = {
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.0)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0 Safari/537.36",
        "curl/8.5.0",
        "Wget/1.21",
        "python-requests/2.31",
        "Go-http-client/1.1",
        "facebookexternalhit/1.1",
        "Mozilla/5.0 (compatible; YandexSPIDER/3.0)", /* case-insensitive */
    };
    for (size_t i = 0; i < sizeof(bots) / sizeof(bots[0]); i++) {
        enr_ua_info_t info = classify(ua, bots[i]);
        if (!info.bot || info.device != ENR_DEV_BOT)
            fail_msg("not a bot: %s", bots[i]);
    }
    assert_false(classify(ua, "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0").bot);
    enr_ua_destroy(ua);
}

static void test_enr_ua_new__pattern_file(void **state)
{
    AT_UNUSED(state);
    at_err_t err;
    char path[] = "/tmp/enr-ua-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "# our own list\n\n  MyScanner  \nfirefox\n";
    assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
    close(fd);
    enr_ua_t *ua = enr_ua_new(path, &err);
    assert_non_null(ua);
    assert_int_equal(enr_ua_npatterns(ua), 2);
    assert_true(classify(ua, "xx myscanner/1").bot);
    assert_true(classify(ua, "Mozilla/5.0 Gecko/20100101 Firefox/121.0").bot);
    assert_false(classify(ua, "Googlebot/2.1").bot); /* the file replaces the default list */
    enr_ua_destroy(ua);

    /* Only comments: refused. */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "# none\n", 7), 7);
    close(fd);
    assert_null(enr_ua_new(path, &err));
    assert_non_null(strstr(err.msg, "no pattern"));
    unlink(path);
    assert_null(enr_ua_new("/nonexistent/patterns.txt", &err));
    assert_int_equal(err.code, AT_ERR_IO);
}

static void test_enr_ua_cache_classify__same_answers_as_the_classifier(void **state)
{
    AT_UNUSED(state);
    at_err_t err;
    enr_ua_t *ua = enr_ua_new(NULL, &err);
    assert_non_null(ua);
    static const char *const uas[] = {
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36 Edg/120.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Version/17.0 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) Version/17.0 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        "curl/8.4.0",
        "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
        "Opera/9.80",
        "x",
        "",
    };
    /* Two slots: entries keep replacing each other, and a UA that is a prefix of another
     * must not be answered from the other's entry. */
    enr_ua_cache_t *c = enr_ua_cache_new(ua, 2);
    assert_non_null(c);
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < AT_ARRAY_LEN(uas); i++) {
            for (size_t cut = strlen(uas[i]); cut + 12 > strlen(uas[i]) && cut != (size_t)-1; cut--) {
                enr_ua_info_t want, got;
                enr_ua_classify(ua, uas[i], cut, &want);
                enr_ua_cache_classify(c, uas[i], cut, &got);
                assert_int_equal(got.family, want.family);
                assert_int_equal(got.device, want.device);
                assert_int_equal(got.bot, want.bot);
                enr_ua_cache_classify(c, uas[i], cut, &got); /* now a hit */
                assert_int_equal(got.family, want.family);
                assert_int_equal(got.device, want.device);
                assert_int_equal(got.bot, want.bot);
            }
        }
    }
    enr_ua_cache_destroy(c);
    enr_ua_cache_destroy(NULL);
    enr_ua_destroy(ua);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enr_ua_classify__families_and_devices),
        cmocka_unit_test(test_enr_ua_classify__default_bots),
        cmocka_unit_test(test_enr_ua_new__pattern_file),
        cmocka_unit_test(test_enr_ua_cache_classify__same_answers_as_the_classifier),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
