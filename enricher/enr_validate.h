/*
 * enr_validate.h: the enricher's per-event rules — validation against core data, pricing,
 * and the documents written to the sinks. Pure functions (no I/O), so every rule is unit
 * tested without Redis or Kafka.
 *
 * Order of the checks (the first failing one is the reason): the envelope
 * (at_event_parse_json / at_event_check: malformed_json, malformed_envelope,
 * unknown_event_type and the field rules), duplicate_event (same id earlier in the batch,
 * decided by the worker), unknown_campaign, campaign_inactive (paused, or ts outside
 * [start, end)), unknown_publisher, publisher_not_allowed (blocked, or not in the
 * campaign's list), bot, budget_exhausted. A conversion (e=conv) is checked for
 * unknown_campaign, wrong_advertiser (a postback's adv is not the campaign's advertiser) and
 * bot (not for postbacks) only; attribution (enr_conversion_apply) may add duplicate_order.
 */
#ifndef ENR_VALIDATE_H
#define ENR_VALIDATE_H

#include <bson/bson.h>

#include "at_event.h"
#include "enr_attrib.h"
#include "enr_cache.h"
#include "enr_ua.h"

#define ENR_DETAIL_MAX AT_ERR_MSG_MAX

typedef struct enr_verdict_s {
    at_reject_t reason;           /* AT_REJ_NONE: valid so far (budget may still reject) */
    char detail[ENR_DETAIL_MAX];  /* names the field and what was expected */
    int64_t price_micros;         /* what this event costs (0: not charged) */
    int64_t budget_micros;        /* the campaign's budget, for the charge script */
    bool chargeable;              /* price_micros > 0: goes through the budget script */
    enr_ua_info_t ua;
    /* Conversions (enr_conversion_apply): what attribution found, the payout counted (0
     * unless attributed) and the winning click's ts. */
    enr_attrib_t attribution;
    int64_t payout_micros;
    int64_t click_ts_ms;
} enr_verdict_t;

/*
 * Price of one event in micros:
 *  - cpm campaign, imp: price_micros / 1000 rounded half up ((p + 500) / 1000);
 *  - cpc campaign, click: price_micros;
 *  - every other combination: 0 (not charged).
 */
int64_t enr_price_micros(const enr_campaign_t *cp, at_event_type_t type);

/*
 * Validates @p ev (already through the envelope check) against the cached campaign @p ce
 * and publisher @p pe (either may be NULL: not known) and the classified user agent.
 * Fills @p v and returns v->reason. A campaign marked exhausted rejects events that cost
 * nothing here (budget_exhausted); chargeable events are left to the budget script, which
 * decides exactly (and answers "already charged" for a replay).
 * @locality: the worker, holding the cache read lock.
 */
at_reject_t enr_validate(const at_event_t *ev, const enr_entry_t *ce, const enr_entry_t *pe,
                         const enr_ua_info_t *ua, enr_verdict_t *v);

/*
 * Conversions: the worker's attribution answer @p op for the valid conversion @p ev of
 * campaign @p cp, applied. A duplicate order becomes the rejection duplicate_order. An
 * attributed conversion takes the click's cr, p and pl (c is the click's already: the
 * clid names it) and is priced: its own payout_micros, else the campaign's. Any other
 * conversion is kept with its attribution and a payout of 0. Returns v->reason.
 * The views set in @p ev point into @p op, which must outlive the event's use.
 */
at_reject_t enr_conversion_apply(at_event_t *ev, const enr_campaign_t *cp, const enr_attrib_op_t *op,
                                 enr_verdict_t *v);

/* Writes the anonymised form of @p ip (IPv4 to /24, IPv6 to /48) into @p out (46 bytes).
 * Returns 0, or -1 for text that is not an IP address (the field is then dropped). */
int enr_ip_anonymize(const char *ip, size_t len, char out[46]);

/*
 * Appends the enriched event to @p out (an initialised, empty bson): "_id" = event id,
 * the envelope fields (v, ts, e, src, c, cr, p, pl, uid, u, ref, ua, ip anonymised, d, tag),
 * then advertiser, advertiser_name, campaign_name, publisher_name, price_micros, ua_family,
 * device. @p cp and @p pb must be the entries' documents; @p pb may be NULL for a conversion
 * (publisher_name is then left out). A conversion also gets clid, order (after tag), and
 * attribution, payout_micros and, when attributed, click_ts (at the end).
 */
void enr_doc_event(bson_t *out, const at_event_t *ev, const enr_campaign_t *cp, const enr_publisher_t *pb,
                   const enr_verdict_t *v);

/*
 * Appends the relaxed Extended JSON of enr_doc_event()'s document to the growable buffer
 * *@p buf (capacity *@p cap, *@p used bytes in use; grown with realloc(), freed by the
 * caller with free()): byte for byte what at_json_append_relaxed() writes for it, mostly
 * without building the BSON. @p plain says that every string field of @p ev is printable
 * ASCII without '"' or '\\' (at_event_parsed_t.plain), so those are copied without being
 * checked or escaped. No newline or NUL is appended. Returns 0, or -1 (nothing appended)
 * when memory runs out or the document cannot be written as JSON.
 */
int enr_doc_event_json(char **buf, size_t *cap, size_t *used, const at_event_t *ev, bool plain,
                       const enr_campaign_t *cp, const enr_publisher_t *pb, const enr_verdict_t *v);

/* The same document built with libbson's appends, field by field: enr_doc_event()'s
 * fallback for documents too large for its buffer, and the reference its hand-built bytes
 * are tested against. */
void enr_doc_event_libbson(bson_t *out, const at_event_t *ev, const enr_campaign_t *cp, const enr_publisher_t *pb,
                           const enr_verdict_t *v);

/*
 * Appends a rejected document to @p out: "_id" = @p rid, then what
 * at_event_rejected_to_json() writes (the readable fields of @p ev, which may be NULL,
 * reason, detail, raw). Returns 0, or -1 when libbson cannot build it.
 */
int enr_doc_rejected(bson_t *out, const char *rid, const at_event_t *ev, at_reject_t reason, const char *detail,
                     const char *raw, size_t rawlen);

/*
 * Maps a failed at_event_parse_json() to a reason: AT_ERR_INVALID = malformed_json; an
 * unrecognised "e" = unknown_event_type; anything else = malformed_envelope.
 */
at_reject_t enr_parse_error_reason(const at_err_t *err);

#endif
