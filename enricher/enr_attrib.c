/*
 * enr_attrib.c: the attribution script and its call (see enr_attrib.h).
 *
 * One EVAL per batch that has clicks or conversions (Redis keeps the compiled script
 * cached by its SHA1, so only the ~1.3 KB text travels again). Keys are built inside the
 * script, so, like the budget script, it needs one Redis, not a cluster.
 */
#include "enr_attrib.h"

#include <stdlib.h>

/*
 * ARGV: [1] the number of operations, then 9 values per operation:
 *   click:      "k", click id, ts ms, c, cr, p, pl, ttl s, ""
 *   conversion: "v", conversion id, ts ms, click id or "", the clid's campaign, advertiser,
 *               order or "", lookback ms, ttl s
 * Returns one string per operation: "k" for a click; for a conversion "D" duplicate order,
 * "N" no click id, "U" unknown click, "E" click older than the lookback, or "A" followed by
 * the click's record "<ts>|<c>|<cr>|<p>|<pl>".
 */
const char enr_attrib_script[] =
    "local call, tonumber, match = redis.call, tonumber, string.match\n"
    "local n = tonumber(ARGV[1])\n"
    "local out = {}\n"
    "for i = 0, n - 1 do\n"
    "  local b = 1 + i * 9\n"
    "  if ARGV[b + 1] == 'k' then\n"
    "    call('SET', 'adtrack:click:' .. ARGV[b + 2],\n"
    "         ARGV[b + 3] .. '|' .. ARGV[b + 4] .. '|' .. ARGV[b + 5] .. '|' .. ARGV[b + 6] .. '|' .. ARGV[b + 7],\n"
    "         'EX', ARGV[b + 8])\n"
    "    out[i + 1] = 'k'\n"
    "  else\n"
    "    local id, ts, clk, cc = ARGV[b + 2], tonumber(ARGV[b + 3]), ARGV[b + 4], ARGV[b + 5]\n"
    "    local adv, ord, lb, ttl = ARGV[b + 6], ARGV[b + 7], tonumber(ARGV[b + 8]), ARGV[b + 9]\n"
    "    local okey, v = nil, nil\n"
    "    if ord ~= '' then\n"
    /* The advertiser's length keeps 'a:b' + 'c' apart from 'a' + 'b:c'. */
    "      okey = 'adtrack:order:' .. #adv .. ':' .. adv .. ':' .. ord\n"
    "      local prev = call('GET', okey)\n"
    "      if prev and prev ~= id then v = 'D' end\n"
    "    end\n"
    "    if v == nil then\n"
    "      if clk == '' then v = 'N'\n"
    "      else\n"
    "        local rec = call('GET', 'adtrack:click:' .. clk)\n"
    "        if not rec then v = 'U'\n"
    "        else\n"
    "          local cts, rc = match(rec, '^(%d+)|([^|]*)|')\n"
    "          if rc ~= cc then v = 'U'\n"
    "          elseif ts - tonumber(cts) > lb then v = 'E'\n"
    "          else v = 'A' .. rec end\n"
    "        end\n"
    "      end\n"
    "      if okey then call('SET', okey, id, 'EX', ttl) end\n"
    "    end\n"
    "    out[i + 1] = v\n"
    "  end\n"
    "end\n"
    "return out\n";

const char *enr_attrib_str(enr_attrib_t a)
{
    static const char *const names[] = {
        [ENR_ATTR_NONE] = "",
        [ENR_ATTR_ATTRIBUTED] = "attributed",
        [ENR_ATTR_NO_CLICK] = "no_click",
        [ENR_ATTR_UNKNOWN_CLICK] = "unknown_click",
        [ENR_ATTR_CLICK_EXPIRED] = "click_expired",
        [ENR_ATTR_DUPLICATE] = "duplicate_order",
    };
    return (unsigned)a < AT_ARRAY_LEN(names) ? names[a] : "";
}

/* Splits "<ts>|c|cr|p|pl" (copied into op->click_rec) into op's click fields. */
static bool parse_record(enr_attrib_op_t *op, const char *s, size_t n)
{
    if (n >= sizeof(op->click_rec))
        return false;
    memcpy(op->click_rec, s, n);
    op->click_rec[n] = '\0';
    at_str_t part[5];
    size_t start = 0, k = 0;
    for (size_t i = 0; i <= n && k < 5; i++) {
        if (i == n || op->click_rec[i] == '|') {
            part[k++] = (at_str_t){op->click_rec + start, i - start};
            start = i + 1;
        }
    }
    if (k != 5 || part[0].len == 0 || part[0].len > 18)
        return false;
    int64_t ts = 0;
    for (size_t i = 0; i < part[0].len; i++) {
        if (part[0].p[i] < '0' || part[0].p[i] > '9')
            return false;
        ts = ts * 10 + (part[0].p[i] - '0');
    }
    op->click_ts_ms = ts;
    op->click_c = part[1];
    op->click_cr = part[2];
    op->click_p = part[3];
    op->click_pl = part[4];
    return true;
}

int enr_attrib_run(redisContext *rc, enr_attrib_op_t *ops, size_t nops, uint64_t *ncmds, at_err_t *err)
{
    if (nops == 0)
        return 0;
    size_t nargs = 4 + nops * 9;
    const char **argv = malloc(nargs * sizeof(*argv));
    size_t *lens = malloc(nargs * sizeof(*lens));
    /* At most two UUIDs and three integers per operation, and the count, as text. */
    char *text = malloc(24 + nops * (2 * (AT_UUID_STR_LEN + 1) + 3 * 24));
    redisReply *r = NULL;
    int ret = -1;
    if (argv == NULL || lens == NULL || text == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "attribution: out of memory");
        goto out;
    }
    size_t a = 0, t = 0;
#define ARG(p_, n_) (argv[a] = (p_), lens[a] = (n_), a++)
#define ARG_STR(s_) ARG((s_).p != NULL ? (s_).p : "", (s_).len)
#define ARG_INT(v_)                                                                                                    \
    do {                                                                                                               \
        int n_ = snprintf(text + t, 24, "%lld", (long long)(v_));                                                      \
        ARG(text + t, (size_t)n_);                                                                                     \
        t += 24;                                                                                                       \
    } while (0)
#define ARG_UUID(u_)                                                                                                   \
    do {                                                                                                               \
        at_uuid_format(&(u_), text + t);                                                                               \
        ARG(text + t, AT_UUID_STR_LEN);                                                                                \
        t += AT_UUID_STR_LEN + 1;                                                                                      \
    } while (0)
    ARG("EVAL", 4);
    ARG(enr_attrib_script, sizeof(enr_attrib_script) - 1);
    ARG("0", 1);
    ARG_INT(nops);
    for (size_t i = 0; i < nops; i++) {
        const enr_attrib_op_t *op = &ops[i];
        if (!op->is_conv) {
            ARG("k", 1);
            ARG_UUID(op->id);
            ARG_INT(op->ts_ms);
            ARG_STR(op->c);
            ARG_STR(op->cr);
            ARG_STR(op->p);
            ARG_STR(op->pl);
            ARG_INT(op->ttl_s);
            ARG("", 0);
        } else {
            ARG("v", 1);
            ARG_UUID(op->id);
            ARG_INT(op->ts_ms);
            if (op->has_click)
                ARG_UUID(op->click_id);
            else
                ARG("", 0);
            ARG_STR(op->c);
            ARG(op->advertiser, strlen(op->advertiser));
            ARG_STR(op->order);
            ARG_INT(op->lookback_ms);
            ARG_INT(op->ttl_s);
        }
    }
#undef ARG
#undef ARG_STR
#undef ARG_INT
#undef ARG_UUID
    r = redisCommandArgv(rc, (int)a, argv, lens);
    (*ncmds)++;
    if (r == NULL) {
        at_err_set(err, rc->err ? AT_ERR_UNAVAILABLE : AT_ERR_INTERNAL, "redis attribution script: %s",
                   rc->err ? rc->errstr : "no reply");
        goto out;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        at_err_set(err, AT_ERR_UNAVAILABLE, "redis attribution script: %s", r->str);
        goto out;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != nops) {
        at_err_set(err, AT_ERR_INTERNAL, "redis attribution script: unexpected reply shape");
        goto out;
    }
    for (size_t i = 0; i < nops; i++) {
        enr_attrib_op_t *op = &ops[i];
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING || e->len < 1) {
            at_err_set(err, AT_ERR_INTERNAL, "redis attribution script: answer %zu is not a string", i);
            goto out;
        }
        op->result = ENR_ATTR_NONE;
        if (!op->is_conv)
            continue;
        switch (e->str[0]) {
        case 'D':
            op->result = ENR_ATTR_DUPLICATE;
            break;
        case 'N':
            op->result = ENR_ATTR_NO_CLICK;
            break;
        case 'U':
            op->result = ENR_ATTR_UNKNOWN_CLICK;
            break;
        case 'E':
            op->result = ENR_ATTR_CLICK_EXPIRED;
            break;
        case 'A':
            /* A record this code did not write (edited by hand) is no evidence of a click. */
            op->result = parse_record(op, e->str + 1, e->len - 1) ? ENR_ATTR_ATTRIBUTED : ENR_ATTR_UNKNOWN_CLICK;
            break;
        default:
            at_err_set(err, AT_ERR_INTERNAL, "redis attribution script: unknown answer '%c'", e->str[0]);
            goto out;
        }
    }
    ret = 0;
out:
    freeReplyObject(r);
    free(argv);
    free(lens);
    free(text);
    return ret;
}
