/*
 * col_ip.h: which address is the client, and how much of it to keep.
 *
 * X-Forwarded-For is only believed when the TCP peer is a configured trusted proxy; then
 * the client is the right-most address in the header that is not itself a trusted proxy
 * (addresses left of it could have been written by the client). Addresses are handled as
 * 16 bytes, IPv4 as IPv4-mapped IPv6.
 */
#ifndef COL_IP_H
#define COL_IP_H

#include <sys/socket.h>
#include "at_err.h"

typedef struct col_cidr_s {
    uint8_t addr[16];
    unsigned bits; /* prefix length over the 128-bit (mapped) form */
} col_cidr_t;

/* Parses "10.0.0.0/8", "2001:db8::/32" or a bare address (full length). 0 or -1 + err. */
int col_cidr_parse(const char *s, col_cidr_t *out, at_err_t *err);

/* Parses a textual address (no port, no brackets) into mapped 16-byte form. 0 or -1. */
int col_ip_parse(const char *s, size_t len, uint8_t out[16]);

bool col_cidr_match(const col_cidr_t *c, const uint8_t addr[16]);

/*
 * Writes the client address as text into @p out (>= 46 bytes): the peer @p sa, or, when
 * the peer matches @p trusted, the right-most untrusted X-Forwarded-For entry (@p xff may
 * be NULL). Malformed XFF entries stop the walk (the last trusted hop is used instead).
 * With @p truncate, IPv4 keeps /24 and IPv6 /48. Returns the length written, 0 if the peer
 * address is unknown.
 */
size_t col_client_ip(const struct sockaddr *sa, const char *xff, size_t xfflen, const col_cidr_t *trusted,
                     size_t ntrusted, bool truncate, char *out, size_t outlen);

#endif
