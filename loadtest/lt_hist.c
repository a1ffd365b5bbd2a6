/*
 * lt_hist.c: log-linear histogram (see lt_hist.h).
 *
 * Layout with s = sub_bits, F = 2^s, H = 2^(s-1):
 *   index v               for v < F (exact);
 *   index F + (k-1)*H + (v >> k) - H   otherwise, where k = msb(v) - (s-1) >= 1,
 * i.e. every power-of-two range [2^m, 2^(m+1)) above F holds H buckets of width 2^k.
 */
#include "lt_hist.h"

#include <math.h>
#include <stdlib.h>

static inline int msb64(uint64_t v)
{
    return 63 - __builtin_clzll(v);
}

static size_t index_of(int sub_bits, uint64_t v)
{
    uint64_t full = (uint64_t)1 << sub_bits;
    if (v < full)
        return (size_t)v;
    uint64_t half = full >> 1;
    int shift = msb64(v) - (sub_bits - 1);
    return (size_t)(full + (uint64_t)(shift - 1) * half + ((v >> shift) - half));
}

size_t lt_hist_index(const lt_hist_t *h, uint64_t value)
{
    return index_of(h->sub_bits, value > h->highest ? h->highest : value);
}

uint64_t lt_hist_bucket_low(const lt_hist_t *h, size_t idx)
{
    uint64_t full = (uint64_t)1 << h->sub_bits;
    if (idx < full)
        return idx;
    uint64_t half = full >> 1;
    uint64_t k = idx - full;
    int shift = (int)(k / half) + 1;
    return (half + k % half) << shift;
}

uint64_t lt_hist_bucket_width(const lt_hist_t *h, size_t idx)
{
    uint64_t full = (uint64_t)1 << h->sub_bits;
    if (idx < full)
        return 1;
    uint64_t half = full >> 1;
    return (uint64_t)1 << ((idx - full) / half + 1);
}

int lt_hist_init(lt_hist_t *h, int sub_bits, uint64_t highest, at_err_t *err)
{
    memset(h, 0, sizeof(*h));
    if (sub_bits < 2 || sub_bits > 20)
        return at_err_set(err, AT_ERR_RANGE, "histogram precision: expected 2..20 sub-bucket bits, got %d", sub_bits);
    if (highest < 2 || highest > ((uint64_t)1 << 62))
        return at_err_set(err, AT_ERR_RANGE, "histogram highest value out of range");
    h->sub_bits = sub_bits;
    h->highest = highest;
    h->nbuckets = index_of(sub_bits, highest) + 1;
    h->counts = calloc(h->nbuckets, sizeof(*h->counts));
    if (h->counts == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "histogram: out of memory for %zu buckets", h->nbuckets);
    h->min = UINT64_MAX;
    return 0;
}

void lt_hist_free(lt_hist_t *h)
{
    if (h == NULL)
        return;
    free(h->counts);
    h->counts = NULL;
    h->nbuckets = 0;
}

void lt_hist_reset(lt_hist_t *h)
{
    memset(h->counts, 0, h->nbuckets * sizeof(*h->counts));
    h->total = 0;
    h->min = UINT64_MAX;
    h->max = 0;
    h->clamped = 0;
    h->sum = 0;
}

void lt_hist_record_n(lt_hist_t *h, uint64_t value, uint64_t count)
{
    if (count == 0)
        return;
    if (value < h->min)
        h->min = value;
    if (value > h->max)
        h->max = value;
    h->sum += (long double)value * (long double)count;
    if (value > h->highest) {
        h->clamped += count;
        value = h->highest;
    }
    h->counts[index_of(h->sub_bits, value)] += count;
    h->total += count;
}

int lt_hist_merge(lt_hist_t *dst, const lt_hist_t *src, at_err_t *err)
{
    if (dst->sub_bits != src->sub_bits || dst->highest != src->highest)
        return at_err_set(err, AT_ERR_INVALID, "histogram merge: different precision or range (%d/%llu vs %d/%llu)",
                          dst->sub_bits, (unsigned long long)dst->highest, src->sub_bits,
                          (unsigned long long)src->highest);
    if (src->total == 0)
        return 0;
    for (size_t i = 0; i < src->nbuckets; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->clamped += src->clamped;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    return 0;
}

uint64_t lt_hist_percentile(const lt_hist_t *h, double pct)
{
    if (h->total == 0)
        return 0;
    if (pct >= 100.0)
        return h->max;
    if (pct < 0)
        pct = 0;
    /* Rank of the wanted value, 1-based; ceil so that p50 of {1,2} is 1 and p50 of {1,2,3} is 2. */
    double r = ceil(pct / 100.0 * (double)h->total);
    uint64_t rank = r < 1 ? 1 : (uint64_t)r;
    if (rank > h->total)
        rank = h->total;
    uint64_t seen = 0;
    for (size_t i = 0; i < h->nbuckets; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = lt_hist_bucket_low(h, i) + lt_hist_bucket_width(h, i) - 1;
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}

double lt_hist_mean(const lt_hist_t *h)
{
    if (h->total == 0)
        return 0;
    return (double)(h->sum / (long double)h->total);
}

double lt_hist_stddev(const lt_hist_t *h)
{
    if (h->total == 0)
        return 0;
    double mean = lt_hist_mean(h);
    long double acc = 0;
    for (size_t i = 0; i < h->nbuckets; i++) {
        if (h->counts[i] == 0)
            continue;
        double mid = (double)lt_hist_bucket_low(h, i) + (double)(lt_hist_bucket_width(h, i) - 1) / 2.0;
        double d = mid - mean;
        acc += (long double)d * d * h->counts[i];
    }
    return sqrt((double)(acc / (long double)h->total));
}
