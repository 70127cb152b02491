/* The C API, found through pkg-config's include path (wasmchord.pc). */
#include <wasmchord.h>
