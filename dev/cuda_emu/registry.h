// Name -> invoker table of the emulated entry points (kernels_emu.cpp, made by gen.py).
#pragma once
#include <cstddef>
#include <utility>
#include <type_traits>
struct EmuEntry { const char* name; void (*invoke)(void** args); };
template <typename F> struct EmuFn;
template <typename... A> struct EmuFn<void (*)(A...)> {
  static constexpr size_t N = sizeof...(A);
  template <auto F, size_t... I> static void call(void** args, std::index_sequence<I...>) {
    F(*static_cast<std::remove_reference_t<A>*>(args[I])...);
  }
};
template <auto F> void emu_invoke(void** args) {
  using T = decltype(F);
  EmuFn<T>::template call<F>(args, std::make_index_sequence<EmuFn<T>::N>{});
}
