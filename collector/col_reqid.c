/*
 * col_reqid.c: event ids derived from the load balancer's request id (see col_reqid.h).
 */
#include "col_reqid.h"

#include <netinet/in.h>
#include <openssl/sha.h>

/* Domain separation: these hashes must never collide with another use of SHA-256 on the
 * same header value. The trailing NUL is hashed too. */
static const char reqid_domain[] = "adtrack.reqid.v1";

static bool token_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.' || c == ':';
}

int col_reqid_parse(const char *value, size_t len, uint64_t now_ms, col_reqid_t *out, at_err_t *err)
{
    out->valid = false;
    if (value == NULL || len == 0)
        return at_err_set(err, AT_ERR_INVALID, "request id: empty; expected <unix ms>-<token>");
    if (len > COL_REQID_MAX_LEN)
        return at_err_set(err, AT_ERR_TOO_LARGE, "request id: longer than %d bytes", COL_REQID_MAX_LEN);

    size_t i = 0;
    uint64_t ms = 0;
    while (i < len && value[i] >= '0' && value[i] <= '9') {
        if (i == 15)
            return at_err_set(err, AT_ERR_INVALID, "request id: timestamp longer than 15 digits");
        ms = ms * 10 + (uint64_t)(value[i] - '0');
        i++;
    }
    if (i == 0 || i >= len || value[i] != '-' || i + 1 == len)
        return at_err_set(err, AT_ERR_INVALID, "request id: expected <unix ms>-<token>");
    for (size_t j = i + 1; j < len; j++)
        if (!token_char(value[j]))
            return at_err_set(err, AT_ERR_INVALID, "request id: token: expected characters from [A-Za-z0-9._:-]");
    uint64_t skew = ms > now_ms ? ms - now_ms : now_ms - ms;
    if (skew > COL_REQID_MAX_SKEW_MS)
        return at_err_set(err, AT_ERR_RANGE, "request id: timestamp %llu ms is more than %d s from this host's clock",
                          (unsigned long long)ms, COL_REQID_MAX_SKEW_MS / 1000);
    out->ms = ms;
    out->len = len;
    memcpy(out->value, value, len);
    out->valid = true;
    return 0;
}

bool col_reqid_peer_trusted(const struct sockaddr *peer, const col_cidr_t *trusted, size_t ntrusted)
{
    uint8_t a[16];

    if (peer == NULL || ntrusted == 0)
        return false;
    if (peer->sa_family == AF_INET) {
        static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        memcpy(a, v4_mapped_prefix, 12);
        memcpy(a + 12, &((const struct sockaddr_in *)peer)->sin_addr, 4);
    } else if (peer->sa_family == AF_INET6) {
        memcpy(a, &((const struct sockaddr_in6 *)peer)->sin6_addr, 16);
    } else {
        return false;
    }
    for (size_t i = 0; i < ntrusted; i++)
        if (col_cidr_match(&trusted[i], a))
            return true;
    return false;
}

int col_reqid_from_request(const struct sockaddr *peer, const col_cidr_t *trusted, size_t ntrusted,
                           const char *value, size_t len, unsigned occurrences, uint64_t now_ms, col_reqid_t *out,
                           at_err_t *err)
{
    out->valid = false;
    if (occurrences == 0 || value == NULL || !col_reqid_peer_trusted(peer, trusted, ntrusted))
        return 0;
    if (occurrences > 1)
        return at_err_set(err, AT_ERR_INVALID, "request id: header sent %u times; expected once", occurrences);
    return col_reqid_parse(value, len, now_ms, out, err) == 0 ? 1 : -1;
}

void col_reqid_event_id(const col_reqid_t *r, uint32_t index, at_uuid_t *out)
{
    uint8_t in[sizeof(reqid_domain) + COL_REQID_MAX_LEN + 4];
    uint8_t h[SHA256_DIGEST_LENGTH];
    size_t n = 0;

    memcpy(in, reqid_domain, sizeof(reqid_domain));
    n += sizeof(reqid_domain);
    memcpy(in + n, r->value, r->len);
    n += r->len;
    in[n++] = (uint8_t)(index >> 24);
    in[n++] = (uint8_t)(index >> 16);
    in[n++] = (uint8_t)(index >> 8);
    in[n++] = (uint8_t)index;
    SHA256(in, n, h);

    /* RFC 9562 5.7 layout, as at_uuid7_next writes it, with hash bits where it puts its
     * counter and random bits. */
    uint64_t ms = r->ms & 0xffffffffffffull;
    uint8_t *b = out->b;
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)(ms >> (40 - 8 * i));
    b[6] = (uint8_t)(0x70 | (h[0] & 0x0f));
    b[7] = h[1];
    b[8] = (uint8_t)(0x80 | (h[2] & 0x3f));
    memcpy(b + 9, h + 3, 7);
}
