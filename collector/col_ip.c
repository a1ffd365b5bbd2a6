/*
 * col_ip.c: client address selection and truncation (see col_ip.h).
 */
#include "col_ip.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool is_v4_mapped(const uint8_t a[16])
{
    return memcmp(a, v4_mapped_prefix, 12) == 0;
}

int col_ip_parse(const char *s, size_t len, uint8_t out[16])
{
    char tmp[INET6_ADDRSTRLEN];
    struct in_addr v4;

    while (len > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len == 0 || len >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    if (inet_pton(AF_INET, tmp, &v4) == 1) {
        memcpy(out, v4_mapped_prefix, 12);
        memcpy(out + 12, &v4, 4);
        return 0;
    }
    if (inet_pton(AF_INET6, tmp, out) == 1)
        return 0;
    return -1;
}

int col_cidr_parse(const char *s, col_cidr_t *out, at_err_t *err)
{
    const char *slash = strchr(s, '/');
    size_t addrlen = slash ? (size_t)(slash - s) : strlen(s);

    if (col_ip_parse(s, addrlen, out->addr) != 0)
        return at_err_set(err, AT_ERR_INVALID, "'%s': expected an IPv4 or IPv6 address or CIDR", s);
    bool v4 = is_v4_mapped(out->addr);
    unsigned maxbits = v4 ? 32 : 128;
    unsigned bits = maxbits;
    if (slash) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (*end != '\0' || slash[1] == '\0' || b < 0 || (unsigned long)b > maxbits)
            return at_err_set(err, AT_ERR_RANGE, "'%s': prefix length must be 0-%u", s, maxbits);
        bits = (unsigned)b;
    }
    out->bits = v4 ? bits + 96 : bits;
    return 0;
}

bool col_cidr_match(const col_cidr_t *c, const uint8_t addr[16])
{
    unsigned full = c->bits / 8, rest = c->bits % 8;

    if (memcmp(c->addr, addr, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (c->addr[full] & mask) == (addr[full] & mask);
}

static bool is_trusted(const uint8_t a[16], const col_cidr_t *trusted, size_t ntrusted)
{
    for (size_t i = 0; i < ntrusted; i++)
        if (col_cidr_match(&trusted[i], a))
            return true;
    return false;
}

static size_t format_addr(const uint8_t a[16], bool truncate, char *out, size_t outlen)
{
    uint8_t b[16];

    memcpy(b, a, 16);
    if (is_v4_mapped(b)) {
        if (truncate)
            b[15] = 0;
        if (inet_ntop(AF_INET, b + 12, out, (socklen_t)outlen) == NULL)
            return 0;
    } else {
        if (truncate)
            memset(b + 6, 0, 10);
        if (inet_ntop(AF_INET6, b, out, (socklen_t)outlen) == NULL)
            return 0;
    }
    return strlen(out);
}

size_t col_client_ip(const struct sockaddr *sa, const char *xff, size_t xfflen, const col_cidr_t *trusted,
                     size_t ntrusted, bool truncate, char *out, size_t outlen)
{
    uint8_t client[16];

    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET) {
        memcpy(client, v4_mapped_prefix, 12);
        memcpy(client + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(client, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    } else {
        return 0;
    }

    /* Walk X-Forwarded-For from the right while the hop we came from is trusted. */
    if (xff != NULL && ntrusted > 0) {
        size_t end = xfflen;
        while (is_trusted(client, trusted, ntrusted) && end > 0) {
            size_t start = end;
            while (start > 0 && xff[start - 1] != ',')
                start--;
            uint8_t hop[16];
            if (col_ip_parse(xff + start, end - start, hop) != 0)
                break;
            memcpy(client, hop, 16);
            end = start > 0 ? start - 1 : 0;
            if (start == 0)
                break;
        }
    }
    return format_addr(client, truncate, out, outlen);
}
