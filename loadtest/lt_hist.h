/*
 * lt_hist.h: log-linear latency histogram in the style of HdrHistogram.
 *
 * Values are unsigned integers (the load tester records microseconds). Values below
 * 2^sub_bits are counted exactly; above, each power-of-two range is split into
 * 2^(sub_bits-1) equal buckets, so a value is known to within 1/2^(sub_bits-1) of itself:
 * sub_bits 11 gives better than 0.1% (3 significant digits), sub_bits 6 about 3%.
 * Values above the trackable maximum are clamped to it and counted in `clamped`; the
 * exact min, max and sum are kept besides the buckets.
 *
 * Two histograms with the same sub_bits and highest value merge by adding counts, so
 * per-thread histograms are combined without loss at the end of a run.
 *
 * Not thread-safe: one histogram per thread, merged after the threads finished.
 */
#ifndef LT_HIST_H
#define LT_HIST_H

#include "at_err.h"

#define LT_HIST_PRECISE 11 /* <= 0.1% relative error: 3 significant digits */
#define LT_HIST_COARSE 6   /* <= 3.2% relative error: for per-interval time series */

typedef struct lt_hist_s {
    int sub_bits;     /* precision, see above */
    uint64_t highest; /* largest value tracked exactly (up to the precision) */
    size_t nbuckets;
    uint64_t *counts; /* heap, nbuckets entries, owned */
    uint64_t total;   /* number of recorded values */
    uint64_t min, max;
    uint64_t clamped; /* values recorded above `highest` */
    long double sum;  /* of the recorded values before clamping, for the mean */
} lt_hist_t;

/* Prepares @p h for values 0..@p highest with precision @p sub_bits (2..20). Returns 0,
 * or -1 with @p err. The caller releases it with lt_hist_free(). */
int lt_hist_init(lt_hist_t *h, int sub_bits, uint64_t highest, at_err_t *err);

/* Releases the buckets; @p h may then be initialised again. Accepts NULL. */
void lt_hist_free(lt_hist_t *h);

/* Forgets all recorded values, keeping the configuration. */
void lt_hist_reset(lt_hist_t *h);

/* Records @p count occurrences of @p value. */
void lt_hist_record_n(lt_hist_t *h, uint64_t value, uint64_t count);
static inline void lt_hist_record(lt_hist_t *h, uint64_t value)
{
    lt_hist_record_n(h, value, 1);
}

/* Adds @p src's counts into @p dst. Both must have the same sub_bits and highest: returns
 * -1 with @p err otherwise. */
int lt_hist_merge(lt_hist_t *dst, const lt_hist_t *src, at_err_t *err);

/*
 * The value at percentile @p pct (0..100): the smallest bucket such that at least pct% of
 * the values are at or below it, reported as that bucket's highest equivalent value and
 * capped at the recorded max (so p100 is the exact max). 0 for an empty histogram.
 */
uint64_t lt_hist_percentile(const lt_hist_t *h, double pct);

/* Mean and standard deviation (the latter from bucket midpoints). 0 when empty. */
double lt_hist_mean(const lt_hist_t *h);
double lt_hist_stddev(const lt_hist_t *h);

/* Bucket geometry, exposed for tests and exporters. */
size_t lt_hist_index(const lt_hist_t *h, uint64_t value);
uint64_t lt_hist_bucket_low(const lt_hist_t *h, size_t idx);
uint64_t lt_hist_bucket_width(const lt_hist_t *h, size_t idx);

#endif
