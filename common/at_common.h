/*
 * at_common.h: definitions every adtrack translation unit may rely on.
 * Included (directly or through another at_ header) by all project code.
 */
#ifndef AT_COMMON_H
#define AT_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Byte offset of a member, for offsetof-driven tables (config, parsers). */
#define AT_OFF(type, member) offsetof(type, member)
#define AT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define AT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define AT_MAX(a, b) ((a) > (b) ? (a) : (b))
#define AT_UNUSED(x) ((void)(x))

/* Unbounded string functions are banned: use snprintf / memcpy with explicit lengths. */
#include <stdio.h>
#include <string.h>
#pragma GCC poison sprintf vsprintf strcpy strcat gets

#endif
