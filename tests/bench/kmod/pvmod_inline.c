// SPDX-License-Identifier: GPL-2.0
/* pvmod.c with its inline and NOP-only sites alone: every site is
 * position-independent, so `pvpass patch --kernel` writes the whole .ko
 * ahead of time, and the oracle loads that patched .ko. */
#define PVMOD_INLINE_ONLY
#include "pvmod.c"
