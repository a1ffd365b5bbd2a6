/*
 * dash_history.h: the history thread (dash_history.c): hourly and daily report data from
 * adtrack-coredata's GET /v1/reports for the page's history charts.
 */
#ifndef DASH_HISTORY_H
#define DASH_HISTORY_H

#include "dash_server.h"

/* Checks --reports / --reports-token and fills srv->reports_url and srv->history_on.
 * 0 (also when --reports is empty: history off) or -1 + err naming the option. */
int dash_history_init(dash_server_t *srv, at_err_t *err);

/* Fetches both reports now and returns the history JSON (heap, *len bytes):
 * {"v":1,"ts_ms":N,"ok":true,"hourly":<report>,"daily":<report>} or
 * {"v":1,"ts_ms":N,"ok":false,"error":"..."}. @locality: the history thread */
char *dash_history_build(dash_server_t *srv, int64_t now_ms, size_t *len);

/* Thread body: dash_history_build every --reports-poll-s, posted as DASH_MSG_HISTORY. */
void *dash_history_main(void *arg);

#endif
