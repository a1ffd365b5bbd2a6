/* Unit tests for enricher/enr_budget.c: counter field names and the key time formats (the
 * script itself runs against a real redis-server in tests/it/test_enr_budget.c, compared
 * with the former script, and in tests/it/test_enricher.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "enr_budget.h"

static void test_enr_budget_rejected_field__every_reason(void **state)
{
    AT_UNUSED(state);
    for (int r = 1; r < AT_REJ__COUNT; r++) {
        char want[96];
        snprintf(want, sizeof(want), "rejected:%s", at_reject_str((at_reject_t)r));
        assert_string_equal(enr_budget_rejected_field((at_reject_t)r), want);
        /* The worker aggregates fields by pointer: one pointer per reason. */
        assert_ptr_equal(enr_budget_rejected_field((at_reject_t)r), enr_budget_rejected_field((at_reject_t)r));
    }
    assert_string_equal(enr_budget_rejected_field(AT_REJ_BOT), "rejected:bot");
    assert_string_equal(enr_budget_rejected_field(AT_REJ__COUNT), "rejected:unknown");
    /* The script's own refusals use the same name. */
    assert_non_null(strstr(enr_budget_script, "'rejected:budget_exhausted'"));
}

static void test_enr_budget_day__utc_formats(void **state)
{
    AT_UNUSED(state);
    char out[16];
    enr_budget_day(INT64_C(1795786022123), out); /* 2026-11-27T13:27:02.123Z */
    assert_string_equal(out, "20261127");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enr_budget_rejected_field__every_reason),
        cmocka_unit_test(test_enr_budget_day__utc_formats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
