/*
 * dash_sse.h: Server-Sent Events framing (WHATWG HTML, "Server-sent events").
 * An event is `event: NAME\n`, one `data: LINE\n` per line of the payload (CR, LF and CRLF
 * all split lines, so a payload can never end an event early or inject a field), and an
 * empty line. Comments (`: text\n\n`) keep idle connections and proxies alive.
 */
#ifndef DASH_SSE_H
#define DASH_SSE_H

#include "dash_buf.h"

/* Appends one event to @p b. @p event may be NULL (a plain "message" event); it must not
 * contain line breaks (callers pass constants). 0 or -1 (the buffer's limit). */
int dash_sse_event(dash_buf_t *b, const char *event, const char *data, size_t len);

/* Appends a comment line plus the blank line; line breaks in @p text become spaces. */
int dash_sse_comment(dash_buf_t *b, const char *text);

/* Appends `retry: MS\n\n`: how long browsers wait before reconnecting. */
int dash_sse_retry(dash_buf_t *b, int ms);

#endif
