/*
 * dash_assets.c: lookup in the generated asset table (see dash_assets.h).
 */
#include "dash_assets.h"

const dash_asset_t *dash_asset_find(const char *path, size_t len)
{
    if (len == 1 && path[0] == '/') {
        path = "/index.html";
        len = strlen(path);
    }
    for (size_t i = 0; i < dash_assets_count; i++)
        if (strlen(dash_assets[i].path) == len && memcmp(dash_assets[i].path, path, len) == 0)
            return &dash_assets[i];
    return NULL;
}
