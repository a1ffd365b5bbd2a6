/*
 * dash_assets.h: the web page (the files in web/dashboard), embedded into the binary at build time
 * by dashboard/embed.cmake, so the binary serves it with no files next to it.
 */
#ifndef DASH_ASSETS_H
#define DASH_ASSETS_H

#include "at_common.h"

typedef struct dash_asset_s {
    const char *path; /* "/dashboard.js"; the page itself is "/index.html" */
    const char *content_type;
    const unsigned char *data;
    size_t len;
} dash_asset_t;

/* The asset served at @p path ("/" means "/index.html"), or NULL. */
const dash_asset_t *dash_asset_find(const char *path, size_t len);

/* Generated (dash_assets_gen.c): the table and its length. */
extern const dash_asset_t dash_assets[];
extern const size_t dash_assets_count;

#endif
