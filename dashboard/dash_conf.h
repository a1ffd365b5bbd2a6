/*
 * dash_conf.h: the dashboard's configuration (one table: dash_conf_table).
 */
#ifndef DASH_CONF_H
#define DASH_CONF_H

#include "at_conf.h"

typedef struct dash_conf_s {
    char *listen; /* HOST:PORT */
    char *redis;  /* HOST:PORT or redis://[user[:password]@]host[:port][/db] */
    char *redis_password; /* secret; instead of a password in --redis */
    int64_t redis_timeout_ms;
    at_conf_list_t scrape; /* NAME=URL, the /metrics of collectors and enrichers */
    int64_t scrape_timeout_ms;
    int64_t poll_ms;
    int64_t history_s;
    int64_t window_min;
    int64_t max_campaigns;
    int64_t max_clients;
    int64_t max_connections;
    int64_t max_connections_per_ip;
    int64_t request_timeout_ms;
    int64_t client_buffer_bytes;
    int64_t heartbeat_ms;
    char *auth;                /* "token" or "none" (an authenticating proxy in front) */
    at_conf_list_t auth_token; /* secret: Bearer tokens / login tokens */
    bool cookie_secure;        /* Secure attribute of the session cookie */
    int64_t session_hours;     /* lifetime of a login session cookie */
    char *reports;         /* coredata base URL for the history charts, "" = off */
    char *reports_token;   /* secret: a coredata read token */
    int64_t reports_poll_s;
    int64_t reports_hours; /* hourly chart length */
    int64_t reports_days;  /* daily chart length */
    char *log_level;
} dash_conf_t;

extern const at_conf_table_t dash_conf_table;

#endif
