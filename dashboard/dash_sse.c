/*
 * dash_sse.c: see dash_sse.h.
 */
#include "dash_sse.h"

int dash_sse_event(dash_buf_t *b, const char *event, const char *data, size_t len)
{
    if (event != NULL) {
        dash_buf_str(b, "event: ");
        dash_buf_str(b, event);
        dash_buf_str(b, "\n");
    }
    size_t i = 0;
    do {
        size_t start = i;
        while (i < len && data[i] != '\n' && data[i] != '\r')
            i++;
        dash_buf_append(b, "data: ", 6);
        dash_buf_append(b, data + start, i - start);
        dash_buf_append(b, "\n", 1);
        if (i < len) {
            if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
                i++;
            i++;
            if (i == len) { /* a trailing line break still ends a (then empty) line */
                dash_buf_append(b, "data: \n", 7);
            }
        }
    } while (i < len);
    return dash_buf_append(b, "\n", 1);
}

int dash_sse_comment(dash_buf_t *b, const char *text)
{
    dash_buf_append(b, ": ", 2);
    for (const char *p = text; *p != '\0'; p++)
        dash_buf_append(b, (*p == '\n' || *p == '\r') ? " " : p, 1);
    return dash_buf_append(b, "\n\n", 2);
}

int dash_sse_retry(dash_buf_t *b, int ms)
{
    return dash_buf_printf(b, "retry: %d\n\n", ms);
}
