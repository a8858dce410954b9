/*
 * status.h — filling an ms_error (backend.h) from CPU backend code. Backends report failures by
 * return code + ms_error; nothing is thrown across the backend boundary.
 */
#ifndef MONOSEMANTIC_CPU_STATUS_H
#define MONOSEMANTIC_CPU_STATUS_H

#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "backend.h"

namespace ms::cpu {

inline int fail(ms_error* err, int code, const char* op, const char* fmt, ...) {
  err->code = code;
  err->device_code = 0;
  std::snprintf(err->op, sizeof err->op, "%s", op);
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(err->message, sizeof err->message, fmt, args);
  va_end(args);
  return code;
}

}  // namespace ms::cpu

#endif
