/*
 * errors.h — turning backend failures into JS errors. The JS layer hands the addon a factory
 * (setErrorFactory) that builds a MonosemanticError { code, op, deviceCode }; native code calls
 * it so every failure surfaces as the same typed error, never as an abort.
 */
#ifndef MONOSEMANTIC_CORE_ERRORS_H
#define MONOSEMANTIC_CORE_ERRORS_H

#include <napi.h>

#include <string>

#include "backend.h"

namespace ms::core {

// Registers the factory: (code: string, op: string, deviceCode: number, message: string) => Error.
void set_error_factory(Napi::Env env, Napi::Function factory);

// Builds the JS error for a backend failure ("E_OOM", "E_DEVICE", ...).
Napi::Value make_error(Napi::Env env, const ms_error& err);

// Throws it (as a C++ Napi::Error, which node-addon-api turns into a JS exception).
[[noreturn]] void throw_error(Napi::Env env, const ms_error& err);

const char* code_name(int code);

}  // namespace ms::core

#endif
