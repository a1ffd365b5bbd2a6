/*
 * cd_rquery.h: the reporting API's request and answer (docs/REPORTS.md, "Reporting API"):
 * parsing and validating the query string of GET /v1/reports, cutting hours into periods
 * in the requested time zone, and writing the aggregated result as JSON or CSV.
 *
 * Pure CPU apart from cd_tzcache_get (reads a zone file the first time a zone is named).
 *
 * @locality: the reports thread (cd_reports.c); a cd_tzcache_t belongs to one thread.
 */
#ifndef CD_RQUERY_H
#define CD_RQUERY_H

#include "cd_doc.h"
#include "cd_rindex.h"
#include "cd_tz.h"

typedef enum cd_metric_e {
    CD_M_IMP,
    CD_M_VIEW,
    CD_M_CLICK,
    CD_M_CONV,
    CD_M_SPEND,
    CD_M_PAYOUT,
    CD_M_REJECTED,
    CD_M_UNIQUES,
    CD_M_CTR,
    CD_M_VIEWABILITY,
    CD_M_CVR,
    CD_M_ECPM,
    CD_M_CPC,
    CD_M_CPA,
    CD_M_REJECTED_BY_REASON, /* not in the default set */
    CD_M_COUNT
} cd_metric_t;

/* Longest ranges: 366 days by day, 31 days by hour (one more hour for a DST change). */
#define CD_RQUERY_MAX_DAYS_DAY 366
#define CD_RQUERY_MAX_DAYS_HOUR 31

/* Zones loaded so far (bounded by the zone database: names that fail are not kept). */
typedef struct cd_tzcache_s {
    cd_tz_t *zones;
    size_t n, cap;
    const char *dir; /* NULL: /usr/share/zoneinfo */
} cd_tzcache_t;

/* The zone @p name, loaded on first use; NULL with @p err. Owned by the cache. */
const cd_tz_t *cd_tzcache_get(cd_tzcache_t *c, const char *name, at_err_t *err);
void cd_tzcache_free(cd_tzcache_t *c);

typedef struct cd_rquery_s {
    int64_t from, to; /* UTC seconds, [from, to) */
    bool daily;
    bool csv;
    cd_dim_t dims[CD_DIM_COUNT];
    int ndims;
    cd_metric_t metrics[CD_M_COUNT]; /* in the order asked for */
    int nmetrics;
    const cd_tz_t *tz; /* from the cache */
} cd_rquery_t;

/*
 * Parses the query string @p qs (the part after '?', length @p len; NULL when there is
 * none). @p accept_csv: the request's Accept header asks for text/csv (used when there is
 * no format parameter). Every problem goes into @p errs (field = the parameter); returns 0
 * when there is none, else -1.
 */
int cd_rquery_parse(const char *qs, size_t len, bool accept_csv, cd_tzcache_t *tzc, cd_rquery_t *q, cd_verrs_t *errs);

/* The aggregation spec of @p q (periods by hour or by day in q's zone). @p q must outlive it. */
void cd_rquery_spec(const cd_rquery_t *q, cd_rspec_t *spec);

/*
 * Writes the answer (JSON or CSV, by q->csv) into a new heap buffer *@p body (caller frees)
 * of *@p len bytes. @p data_through_ms: the newest "mt" indexed (INT64_MIN: none).
 * 0, or -1 when memory runs out.
 */
int cd_rquery_render(const cd_rquery_t *q, const cd_rindex_t *ix, const cd_rresult_t *res, int64_t data_through_ms,
                     char **body, size_t *len);

/* The metric's name in the API ("spend_micros"). */
const char *cd_metric_name(cd_metric_t m);
const char *cd_dim_name(cd_dim_t d);

#endif
