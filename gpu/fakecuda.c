// A stand-in for NVIDIA's driver library (libcuda.so) that lets Burn's `cuda` backend run on a
// machine with no GPU, to rehearse what it compiles: gpu/rehearse-cuda.sh. It reports one H100
// (compute capability 9.0, 132 SMs, 80 GiB, a CUDA 13.0 driver), keeps "device" memory in host
// memory (copies are real copies), and runs no kernel. What it checks is what the driver would:
//
//  * cuModuleLoadData: the PTX CubeCL's LLVM compiler produced is saved ($FAKECUDA_PTX_DIR, if
//    set) and assembled by NVIDIA's ptxas for the target the PTX names ($FAKECUDA_PTXAS; the driver's
//    own JIT would do the same; with $FAKECUDA_JIT_CACHE, a folder, a module assembled before is
//    not assembled again, as the driver's JIT cache does): a module ptxas rejects fails with
//    CUDA_ERROR_INVALID_PTX, its log on stderr, as the real driver fails;
//  * cuLaunchKernel: the block is the shape the kernel was compiled for (its `.reqntid`, which
//    CubeCL's LLVM backend writes for every kernel) and the launch fits an H100 (threads a
//    block, grid, registers from ptxas for that many threads, static + dynamic shared memory
//    against the 48 KiB default or the limit cuFuncSetAttribute raised), else
//    CUDA_ERROR_INVALID_VALUE / LAUNCH_OUT_OF_RESOURCES, as the driver answers.
//
// Each module's kernels (registers, shared memory) and each function's launch shapes (once per
// shape) are logged to $FAKECUDA_LOG for the summary. Numbers a program computes here are
// meaningless (no kernel runs, memory starts uninitialised): it shows what is compiled and
// launched, not what it computes. Time on the "device" is a clock each launch moves on, so
// CubeCL's timers see time pass. Functions cudarc asks for and this file lacks make cudarc panic
// with "Missing symbol NAME", which names what to add. Build: cc -shared -fPIC -O2 -o
// libcuda.so.1 gpu/fakecuda.c -lpthread (gpu/rehearse-cuda.sh does).
#define _GNU_SOURCE
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void *CUcontext, *CUstream, *CUmodule;
// "Device" memory is host memory: a device pointer is a host address.
#define PTR(d) ((void *)(uintptr_t)(d))

enum {
  SUCCESS = 0,
  INVALID_VALUE = 1,
  INVALID_DEVICE = 101,
  INVALID_PTX = 218,
  NOT_FOUND = 500,
  LAUNCH_OUT_OF_RESOURCES = 701,
  NOT_SUPPORTED = 801,
};

// An H100 SXM's limits (-DREGS_PER_SM=... and so on make a smaller GPU, to see a refusal).
#ifndef MAX_THREADS
#define MAX_THREADS 1024
#endif
#ifndef REGS_PER_SM
#define REGS_PER_SM 65536
#endif
#ifndef SMEM_DEFAULT
#define SMEM_DEFAULT (48 * 1024)
#endif
#ifndef SMEM_OPTIN
#define SMEM_OPTIN 232448
#endif
#define TOTAL_MEM (80ULL << 30)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int modules_loaded, modules_rejected;
static long launches;

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_file;
static void logf_(const char *fmt, ...) {
  pthread_mutex_lock(&log_lock);
  if (!log_file) {
    const char *path = getenv("FAKECUDA_LOG");
    log_file = path ? fopen(path, "a") : NULL;
  }
  if (log_file) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(log_file, fmt, ap);
    va_end(ap);
    fputc('\n', log_file);
    fflush(log_file);
  }
  pthread_mutex_unlock(&log_lock);
}

// --- errors --------------------------------------------------------------------------------
static const struct {
  CUresult code;
  const char *name, *text;
} errors[] = {
    {SUCCESS, "CUDA_SUCCESS", "no error"},
    {INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {INVALID_PTX, "CUDA_ERROR_INVALID_PTX",
     "a PTX JIT compilation failed (stand-in driver: ptxas rejected the module)"},
    {NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {LAUNCH_OUT_OF_RESOURCES, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
     "too many resources requested for launch"},
    {NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported (stand-in driver)"},
};
static int error_index(CUresult e) {
  for (size_t i = 0; i < sizeof errors / sizeof *errors; i++)
    if (errors[i].code == e) return (int)i;
  return -1;
}
CUresult cuGetErrorString(CUresult e, const char **s) {
  int i = error_index(e);
  *s = i < 0 ? "unknown error (stand-in driver)" : errors[i].text;
  return SUCCESS;
}
CUresult cuGetErrorName(CUresult e, const char **s) {
  int i = error_index(e);
  *s = i < 0 ? "CUDA_ERROR_UNKNOWN" : errors[i].name;
  return SUCCESS;
}

// --- driver and device ---------------------------------------------------------------------
CUresult cuInit(unsigned flags) { (void)flags; return SUCCESS; }
CUresult cuDriverGetVersion(int *v) { *v = 13000; return SUCCESS; }
CUresult cuDeviceGetCount(int *n) { *n = 1; return SUCCESS; }
CUresult cuDeviceGet(CUdevice *d, int ordinal) {
  if (ordinal != 0) return INVALID_DEVICE;
  *d = 0;
  return SUCCESS;
}
CUresult cuDeviceGetName(char *name, int len, CUdevice d) {
  (void)d;
  snprintf(name, len, "NVIDIA H100 80GB HBM3");
  return SUCCESS;
}
CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice d) { (void)d; *bytes = TOTAL_MEM; return SUCCESS; }
CUresult cuDeviceTotalMem(size_t *bytes, CUdevice d) { return cuDeviceTotalMem_v2(bytes, d); }
CUresult cuDeviceGetUuid(unsigned char *uuid, CUdevice d) { (void)d; memset(uuid, 0x42, 16); return SUCCESS; }
CUresult cuDeviceGetUuid_v2(unsigned char *uuid, CUdevice d) { return cuDeviceGetUuid(uuid, d); }
CUresult cuDeviceGetPCIBusId(char *id, int len, CUdevice d) {
  (void)d;
  snprintf(id, len, "00000000:00:00.0");
  return SUCCESS;
}
CUresult cuDeviceGetLuid(char *luid, unsigned *mask, CUdevice d) {
  (void)luid; (void)mask; (void)d;
  return NOT_SUPPORTED;  // as on Linux
}
// The device attributes CubeCL and cudarc ask for (CU_DEVICE_ATTRIBUTE_*), an H100 SXM's.
static const int attributes[][2] = {
    {1, MAX_THREADS},     // MAX_THREADS_PER_BLOCK
    {2, 1024},            // MAX_BLOCK_DIM_X
    {3, 1024},            // MAX_BLOCK_DIM_Y
    {4, 64},              // MAX_BLOCK_DIM_Z
    {5, 2147483647},      // MAX_GRID_DIM_X
    {6, 65535},           // MAX_GRID_DIM_Y
    {7, 65535},           // MAX_GRID_DIM_Z
    {8, SMEM_DEFAULT},    // MAX_SHARED_MEMORY_PER_BLOCK
    {9, 65536},           // TOTAL_CONSTANT_MEMORY
    {10, 32},             // WARP_SIZE
    {11, 2147483647},     // MAX_PITCH
    {12, REGS_PER_SM},    // MAX_REGISTERS_PER_BLOCK
    {13, 1980000},        // CLOCK_RATE (kHz)
    {14, 512},            // TEXTURE_ALIGNMENT
    {15, 1},              // GPU_OVERLAP
    {16, 132},            // MULTIPROCESSOR_COUNT
    {17, 0},              // KERNEL_EXEC_TIMEOUT
    {18, 0},              // INTEGRATED
    {19, 1},              // CAN_MAP_HOST_MEMORY
    {20, 0},              // COMPUTE_MODE (default)
    {31, 1},              // CONCURRENT_KERNELS
    {32, 1},              // ECC_ENABLED
    {33, 0},              // PCI_BUS_ID
    {34, 0},              // PCI_DEVICE_ID
    {36, 2619000},        // MEMORY_CLOCK_RATE (kHz)
    {37, 5120},           // GLOBAL_MEMORY_BUS_WIDTH
    {38, 50 << 20},       // L2_CACHE_SIZE
    {39, 2048},           // MAX_THREADS_PER_MULTIPROCESSOR
    {40, 2},              // ASYNC_ENGINE_COUNT
    {41, 1},              // UNIFIED_ADDRESSING
    {50, 0},              // PCI_DOMAIN_ID
    {75, 9},              // COMPUTE_CAPABILITY_MAJOR
    {76, 0},              // COMPUTE_CAPABILITY_MINOR
    {81, 233472},         // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
    {82, REGS_PER_SM},    // MAX_REGISTERS_PER_MULTIPROCESSOR
    {83, 1},              // MANAGED_MEMORY
    {95, 1},              // COOPERATIVE_LAUNCH
    {97, SMEM_OPTIN},     // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
    {106, 32},            // MAX_BLOCKS_PER_MULTIPROCESSOR
    {111, 1024},          // RESERVED_SHARED_MEMORY_PER_BLOCK
    {115, 1},             // MEMORY_POOLS_SUPPORTED
    {120, 1},             // CLUSTER_LAUNCH
};
// Any other is 0, and logged.
CUresult cuDeviceGetAttribute(int *v, int attribute, CUdevice d) {
  (void)d;
  for (size_t i = 0; i < sizeof attributes / sizeof *attributes; i++)
    if (attributes[i][0] == attribute) {
      *v = attributes[i][1];
      return SUCCESS;
    }
  *v = 0;
  logf_("attribute %d: 0 (not modelled)", attribute);
  return SUCCESS;
}

// --- contexts ------------------------------------------------------------------------------
static int the_context;
static __thread CUcontext current;
CUresult cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d) { (void)d; *c = &the_context; return SUCCESS; }
CUresult cuDevicePrimaryCtxRelease(CUdevice d) { (void)d; return SUCCESS; }
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d) { (void)d; return SUCCESS; }
CUresult cuDevicePrimaryCtxReset(CUdevice d) { (void)d; return SUCCESS; }
CUresult cuDevicePrimaryCtxReset_v2(CUdevice d) { (void)d; return SUCCESS; }
CUresult cuDevicePrimaryCtxSetFlags(CUdevice d, unsigned f) { (void)d; (void)f; return SUCCESS; }
CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice d, unsigned f) { (void)d; (void)f; return SUCCESS; }
CUresult cuDevicePrimaryCtxGetState(CUdevice d, unsigned *f, int *active) { (void)d; *f = 0; *active = 1; return SUCCESS; }
CUresult cuCtxSetCurrent(CUcontext c) { current = c; return SUCCESS; }
CUresult cuCtxGetCurrent(CUcontext *c) { *c = current; return SUCCESS; }
CUresult cuCtxPushCurrent(CUcontext c) { current = c; return SUCCESS; }
CUresult cuCtxPushCurrent_v2(CUcontext c) { current = c; return SUCCESS; }
CUresult cuCtxPopCurrent(CUcontext *c) { if (c) *c = current; return SUCCESS; }
CUresult cuCtxPopCurrent_v2(CUcontext *c) { if (c) *c = current; return SUCCESS; }
CUresult cuCtxGetDevice(CUdevice *d) { *d = 0; return SUCCESS; }
CUresult cuCtxSynchronize(void) { return SUCCESS; }
CUresult cuCtxGetStreamPriorityRange(int *least, int *greatest) {
  if (least) *least = 0;
  if (greatest) *greatest = -5;
  return SUCCESS;
}
CUresult cuCtxSetLimit(int limit, size_t v) { (void)limit; (void)v; return SUCCESS; }
CUresult cuCtxGetLimit(size_t *v, int limit) { (void)limit; *v = 0; return SUCCESS; }

// --- streams and events: everything is done by the time it is asked -----------------------
static int the_streams[1024];
static int next_stream;
static CUresult new_stream(CUstream *s) {
  pthread_mutex_lock(&lock);
  *s = &the_streams[next_stream++ % 1024];
  pthread_mutex_unlock(&lock);
  return SUCCESS;
}
CUresult cuStreamCreate(CUstream *s, unsigned flags) { (void)flags; return new_stream(s); }
CUresult cuStreamCreateWithPriority(CUstream *s, unsigned flags, int p) { (void)flags; (void)p; return new_stream(s); }
CUresult cuStreamDestroy(CUstream s) { (void)s; return SUCCESS; }
CUresult cuStreamDestroy_v2(CUstream s) { (void)s; return SUCCESS; }
CUresult cuStreamSynchronize(CUstream s) { (void)s; return SUCCESS; }
CUresult cuStreamQuery(CUstream s) { (void)s; return SUCCESS; }
CUresult cuStreamWaitEvent(CUstream s, void *e, unsigned f) { (void)s; (void)e; (void)f; return SUCCESS; }
// Time on the device is a clock that each launch moves on by a few microseconds (more for a
// larger grid), so what CubeCL times (autotune, its throughput probes, which launch more and
// more until a sample takes long enough) sees time pass.
static double device_ms;
CUresult cuEventCreate(void **e, unsigned flags) {
  (void)flags;
  *e = calloc(1, sizeof(double));
  return SUCCESS;
}
CUresult cuEventDestroy(void *e) { free(e); return SUCCESS; }
CUresult cuEventDestroy_v2(void *e) { free(e); return SUCCESS; }
CUresult cuEventRecord(void *e, CUstream s) {
  (void)s;
  pthread_mutex_lock(&lock);
  *(double *)e = device_ms;
  pthread_mutex_unlock(&lock);
  return SUCCESS;
}
CUresult cuEventRecordWithFlags(void *e, CUstream s, unsigned f) { (void)f; return cuEventRecord(e, s); }
CUresult cuEventSynchronize(void *e) { (void)e; return SUCCESS; }
CUresult cuEventQuery(void *e) { (void)e; return SUCCESS; }
CUresult cuEventElapsedTime(float *ms, void *a, void *b) {
  *ms = (float)(*(double *)b - *(double *)a);
  return SUCCESS;
}
CUresult cuEventElapsedTime_v2(float *ms, void *a, void *b) { return cuEventElapsedTime(ms, a, b); }
CUresult cuLaunchHostFunc(CUstream s, void (*fn)(void *), void *data) { (void)s; fn(data); return SUCCESS; }

// --- memory: host memory, aligned as the driver aligns -------------------------------------
static CUresult alloc(CUdeviceptr *p, size_t n) {
  void *m = NULL;
  if (posix_memalign(&m, 512, n ? n : 1)) return 2;  // CUDA_ERROR_OUT_OF_MEMORY
  *p = (CUdeviceptr)(uintptr_t)m;
  return SUCCESS;
}
CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n) { return alloc(p, n); }
CUresult cuMemAlloc(CUdeviceptr *p, size_t n) { return alloc(p, n); }
CUresult cuMemAllocAsync(CUdeviceptr *p, size_t n, CUstream s) { (void)s; return alloc(p, n); }
CUresult cuMemAllocPitch_v2(CUdeviceptr *p, size_t *pitch, size_t w, size_t h, unsigned e) {
  (void)e;
  *pitch = (w + 511) / 512 * 512;
  return alloc(p, *pitch * h);
}
CUresult cuMemFree_v2(CUdeviceptr p) { free(PTR(p)); return SUCCESS; }
CUresult cuMemFree(CUdeviceptr p) { return cuMemFree_v2(p); }
CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s) { (void)s; return cuMemFree_v2(p); }
CUresult cuMemAllocHost_v2(void **p, size_t n) {
  CUdeviceptr d = 0;
  CUresult r = alloc(&d, n);
  *p = PTR(d);
  return r;
}
CUresult cuMemAllocHost(void **p, size_t n) { return cuMemAllocHost_v2(p, n); }
CUresult cuMemHostAlloc(void **p, size_t n, unsigned f) { (void)f; return cuMemAllocHost_v2(p, n); }
CUresult cuMemFreeHost(void *p) { free(p); return SUCCESS; }
CUresult cuMemHostRegister_v2(void *p, size_t n, unsigned f) { (void)p; (void)n; (void)f; return SUCCESS; }
CUresult cuMemHostUnregister(void *p) { (void)p; return SUCCESS; }
CUresult cuMemGetInfo_v2(size_t *free_, size_t *total) { *free_ = TOTAL_MEM; *total = TOTAL_MEM; return SUCCESS; }
CUresult cuMemGetInfo(size_t *free_, size_t *total) { return cuMemGetInfo_v2(free_, total); }

static CUresult copy(void *dst, const void *src, size_t n) {
  memmove(dst, src, n);
  return SUCCESS;
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void *s, size_t n) { return copy(PTR(d), s, n); }
CUresult cuMemcpyDtoH_v2(void *d, CUdeviceptr s, size_t n) { return copy(d, PTR(s), n); }
CUresult cuMemcpyDtoD_v2(CUdeviceptr d, CUdeviceptr s, size_t n) { return copy(PTR(d), PTR(s), n); }
CUresult cuMemcpy(CUdeviceptr d, CUdeviceptr s, size_t n) { return copy(PTR(d), PTR(s), n); }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void *s, size_t n, CUstream st) {
  (void)st;
  return copy(PTR(d), s, n);
}
CUresult cuMemcpyDtoHAsync_v2(void *d, CUdeviceptr s, size_t n, CUstream st) {
  (void)st;
  return copy(d, PTR(s), n);
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream st) {
  (void)st;
  return copy(PTR(d), PTR(s), n);
}
CUresult cuMemcpyAsync(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream st) {
  (void)st;
  return copy(PTR(d), PTR(s), n);
}

typedef struct {
  size_t srcXInBytes, srcY;
  int srcMemoryType;
  const void *srcHost;
  CUdeviceptr srcDevice;
  void *srcArray;
  size_t srcPitch;
  size_t dstXInBytes, dstY;
  int dstMemoryType;
  void *dstHost;
  CUdeviceptr dstDevice;
  void *dstArray;
  size_t dstPitch;
  size_t WidthInBytes, Height;
} CUDA_MEMCPY2D;
CUresult cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D *c, CUstream s) {
  (void)s;
  // Memory types: 1 host, 2 device, 4 unified; all of it is host memory here.
  const char *src = c->srcMemoryType == 1 ? (const char *)c->srcHost : (const char *)(uintptr_t)c->srcDevice;
  char *dst = c->dstMemoryType == 1 ? (char *)c->dstHost : (char *)(uintptr_t)c->dstDevice;
  if (c->srcMemoryType == 3 || c->dstMemoryType == 3) return NOT_SUPPORTED;
  if (c->srcPitch < c->WidthInBytes || c->dstPitch < c->WidthInBytes) return INVALID_VALUE;
  for (size_t y = 0; y < c->Height; y++)
    memmove(dst + (c->dstY + y) * c->dstPitch + c->dstXInBytes,
            src + (c->srcY + y) * c->srcPitch + c->srcXInBytes, c->WidthInBytes);
  return SUCCESS;
}
CUresult cuMemcpy2D_v2(const CUDA_MEMCPY2D *c) { return cuMemcpy2DAsync_v2(c, NULL); }
CUresult cuMemcpy2DUnaligned_v2(const CUDA_MEMCPY2D *c) { return cuMemcpy2DAsync_v2(c, NULL); }

#define MEMSET(name, type)                                                      \
  CUresult name(CUdeviceptr d, type v, size_t n) {                               \
    type *p = PTR(d);                                                            \
    for (size_t i = 0; i < n; i++) p[i] = v;                                     \
    return SUCCESS;                                                              \
  }                                                                              \
  CUresult name##Async(CUdeviceptr d, type v, size_t n, CUstream s) {            \
    (void)s;                                                                     \
    return name(d, v, n);                                                        \
  }
MEMSET(cuMemsetD8, unsigned char)
MEMSET(cuMemsetD16, unsigned short)
MEMSET(cuMemsetD32, unsigned int)
CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, size_t n) { return cuMemsetD8(d, v, n); }
CUresult cuMemsetD16_v2(CUdeviceptr d, unsigned short v, size_t n) { return cuMemsetD16(d, v, n); }
CUresult cuMemsetD32_v2(CUdeviceptr d, unsigned int v, size_t n) { return cuMemsetD32(d, v, n); }

CUresult cuPointerGetAttribute(void *data, int attribute, CUdeviceptr p) {
  (void)p;
  if (attribute == 2) { *(int *)data = 2; return SUCCESS; }  // MEMORY_TYPE: device
  return NOT_SUPPORTED;
}

// --- modules: PTX saved and assembled by ptxas --------------------------------------------
#define MAX_FUNCS 16
#define SHAPES 8
typedef struct {
  char name[256];
  // max_dynamic_smem: what cuFuncSetAttribute allowed; until then static + dynamic ≤ 48 KiB.
  int registers, static_smem, max_dynamic_smem;
  // The PTX's `.reqntid` (the block shape the kernel was compiled for: a launch with any other
  // is refused, CUDA_ERROR_INVALID_VALUE) or `.maxntid` (at most that many threads); 0: none.
  unsigned reqntid[3], maxntid[3];
  unsigned shapes[SHAPES][7];  // the last launch shapes logged: grid, block, shared memory
  int next_shape;
} Function;
typedef struct {
  int id;
  int assembled;  // by ptxas, whose report listed every entry point
  int nfuncs;
  Function funcs[MAX_FUNCS];
  char *ptx;  // a copy: the functions' directives are read from it
} Module;

// The `.reqntid` / `.maxntid` directives of entry `name` in `ptx` (between its `.entry` line and
// its body's `{`).
static void read_directive(const char *entry, const char *body, const char *name, unsigned dims[3]) {
  const char *d = strstr(entry, name);
  if (!d || (body && d > body)) return;
  char format[32];
  snprintf(format, sizeof format, "%s %%u, %%u, %%u", name);
  sscanf(d, format, &dims[0], &dims[1], &dims[2]);
}
static void read_directives(Function *f, const char *ptx) {
  char entry[300];
  snprintf(entry, sizeof entry, ".entry %s(", f->name);
  const char *e = strstr(ptx, entry);
  if (!e) return;
  const char *body = strchr(e, '{');
  read_directive(e, body, ".reqntid", f->reqntid);
  read_directive(e, body, ".maxntid", f->maxntid);
}

// ptxas -v's report: "Compiling entry function 'NAME' for 'sm_90a'", then
// "Used N registers, used B barriers, S bytes smem, ...".
static void read_report(Module *m, const char *report) {
  const char *p = report;
  Function *f = NULL;
  while ((p = strstr(p, "ptxas info"))) {
    const char *line_end = strchr(p, '\n');
    size_t len = line_end ? (size_t)(line_end - p) : strlen(p);
    char line[1024];
    snprintf(line, sizeof line, "%.*s", (int)(len < 1023 ? len : 1023), p);
    char *entry = strstr(line, "entry function '");
    if (entry && m->nfuncs < MAX_FUNCS) {
      entry += strlen("entry function '");
      char *end = strchr(entry, '\'');
      if (end) *end = 0;
      f = &m->funcs[m->nfuncs++];
      snprintf(f->name, sizeof f->name, "%s", entry);
      f->max_dynamic_smem = -1;
    }
    char *used = strstr(line, "Used ");
    if (used && f) {
      sscanf(used, "Used %d registers", &f->registers);
      char *smem = strstr(line, " bytes smem");
      if (smem) {
        char *q = smem;
        while (q > line && q[-1] >= '0' && q[-1] <= '9') q--;
        f->static_smem = atoi(q);
      }
    }
    p = line_end ? line_end : p + len;
  }
}

static void module_free(Module *m) {
  free(m->ptx);
  free(m);
}

CUresult cuModuleLoadData(CUmodule *out, const void *image) {
  const char *ptx = image;
  Module *m = calloc(1, sizeof *m);
  if (!m || !(m->ptx = strdup(ptx))) {
    free(m);
    return 2;  // CUDA_ERROR_OUT_OF_MEMORY
  }
  pthread_mutex_lock(&lock);
  m->id = modules_loaded++;
  pthread_mutex_unlock(&lock);
  const char *dir = getenv("FAKECUDA_PTX_DIR");
  const char *ptxas = getenv("FAKECUDA_PTXAS");
  if (ptxas && !*ptxas) ptxas = NULL;
  char path[4096] = "";
  if (dir) {
    snprintf(path, sizeof path, "%s/%05d.ptx", dir, m->id);
  } else if (ptxas) {
    snprintf(path, sizeof path, "/tmp/fakecuda-%d-%05d.ptx", (int)getpid(), m->id);
  }
  if (*path) {
    FILE *f = fopen(path, "w");
    if (!f) {
      module_free(m);
      return INVALID_VALUE;
    }
    fputs(ptx, f);
    fclose(f);
  }
  if (ptxas) {
    char target[32] = "sm_90";
    const char *t = strstr(ptx, ".target ");
    if (t) sscanf(t, ".target %31[a-z0-9_]", target);
    // The driver keeps what its JIT assembled (~/.nv/ComputeCache), keyed by the PTX: a module
    // loaded again, by this process or a later one, is not assembled again. $FAKECUDA_JIT_CACHE
    // is that cache here: ptxas's report of each module it accepted, by the PTX's hash.
    const char *jit_cache = getenv("FAKECUDA_JIT_CACHE");
    char cached[4096] = "";
    if (jit_cache) {
      uint64_t h = 1469598103934665603ULL;  // FNV-1a
      for (const char *c = ptx; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ULL;
      snprintf(cached, sizeof cached, "%s/%016llx-%s.txt", jit_cache, (unsigned long long)h, target);
    }
    size_t cap = 1 << 16, len = 0;
    char *report = malloc(cap);
    size_t got;
    int status;
    FILE *p = *cached ? fopen(cached, "r") : NULL;
    int hit = p != NULL;
    if (!hit) {
      char cmd[8192];
      snprintf(cmd, sizeof cmd, "'%s' -arch=%s -v -o /dev/null '%s' 2>&1", ptxas, target, path);
      p = popen(cmd, "r");
    }
    while (p && (got = fread(report + len, 1, cap - 1 - len, p)) > 0) {
      len += got;
      if (len + 1 >= cap && !(report = realloc(report, cap *= 2))) abort();
    }
    report[len] = 0;
    if (hit) {
      fclose(p);
      status = 0;
    } else {
      status = p ? pclose(p) : -1;
    }
    if (status == 0 && !hit && *cached) {
      char tmp[4200];
      snprintf(tmp, sizeof tmp, "%s.%d.%d", cached, (int)getpid(), m->id);
      FILE *c = fopen(tmp, "w");
      if (c) {
        fputs(report, c);
        fclose(c);
        rename(tmp, cached);
      }
    }
    if (status != 0) {
      pthread_mutex_lock(&lock);
      modules_rejected++;
      pthread_mutex_unlock(&lock);
      fprintf(stderr, "fakecuda: ptxas rejected module %s (%s):\n%s\n", path, target, report);
      logf_("module %05d rejected %s", m->id, target);
      free(report);
      module_free(m);
      return INVALID_PTX;
    }
    read_report(m, report);
    m->assembled = 1;
    for (int i = 0; i < m->nfuncs; i++) read_directives(&m->funcs[i], ptx);
    for (int i = 0; i < m->nfuncs; i++)
      logf_("module %05d %s function %s registers %d smem %d reqntid %u,%u,%u%s", m->id, target,
            m->funcs[i].name, m->funcs[i].registers, m->funcs[i].static_smem,
            m->funcs[i].reqntid[0], m->funcs[i].reqntid[1], m->funcs[i].reqntid[2],
            hit ? " (JIT cache)" : "");
    free(report);
  } else {
    logf_("module %05d loaded (not assembled)", m->id);
  }
  if (!dir && *path) unlink(path);
  *out = m;
  return SUCCESS;
}
CUresult cuModuleLoadDataEx(CUmodule *out, const void *image, unsigned n, void *o, void **v) {
  (void)n; (void)o; (void)v;
  return cuModuleLoadData(out, image);
}
CUresult cuModuleUnload(CUmodule m) {
  module_free(m);
  return SUCCESS;
}
CUresult cuModuleGetFunction(void **out, CUmodule mod, const char *name) {
  Module *m = mod;
  for (int i = 0; i < m->nfuncs; i++)
    if (!strcmp(m->funcs[i].name, name)) { *out = &m->funcs[i]; return SUCCESS; }
  if (m->assembled) return NOT_FOUND;
  // Not assembled: a function of no known size.
  if (m->nfuncs >= MAX_FUNCS) return NOT_FOUND;
  Function *f = &m->funcs[m->nfuncs++];
  snprintf(f->name, sizeof f->name, "%s", name);
  f->max_dynamic_smem = -1;
  read_directives(f, m->ptx);
  *out = f;
  return SUCCESS;
}
CUresult cuFuncSetAttribute(void *func, int attribute, int value) {
  Function *f = func;
  if (attribute == 8) {  // MAX_DYNAMIC_SHARED_SIZE_BYTES
    if (value < 0 || value + f->static_smem > SMEM_OPTIN) return INVALID_VALUE;
    f->max_dynamic_smem = value;
  }
  return SUCCESS;
}
// The registers a warp is given: 8 a thread at a time, so 256 a warp at a time.
static unsigned long warp_registers(int per_thread) {
  return ((unsigned long)per_thread * 32 + 255) / 256 * 256;
}
CUresult cuFuncGetAttribute(int *v, int attribute, void *func) {
  Function *f = func;
  switch (attribute) {
    case 0:  // MAX_THREADS_PER_BLOCK: what the registers allow (see `launch`), whole warps
      *v = f->registers ? REGS_PER_SM / warp_registers(f->registers) / 4 * 4 * 32 : MAX_THREADS;
      if (*v > MAX_THREADS) *v = MAX_THREADS;
      break;
    case 1: *v = f->static_smem; break;                      // SHARED_SIZE_BYTES
    case 4: *v = f->registers; break;                        // NUM_REGS
    case 8: *v = f->max_dynamic_smem < 0 ? SMEM_DEFAULT - f->static_smem : f->max_dynamic_smem; break;
    default: *v = 0;
  }
  return SUCCESS;
}

// --- launches: checked against the H100's limits, not run ----------------------------------
static CUresult launch(Function *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                       unsigned bz, unsigned smem) {
  unsigned long threads = (unsigned long)bx * by * bz;
  const char *why = NULL;
  CUresult r = SUCCESS;
  if (!threads || threads > MAX_THREADS || bx > 1024 || by > 1024 || bz > 64) {
    why = "block shape";
    r = INVALID_VALUE;
  } else if (f->reqntid[0] && (bx != f->reqntid[0] || by != f->reqntid[1] || bz != f->reqntid[2])) {
    why = "block shape differs from the kernel's .reqntid";
    r = INVALID_VALUE;
  } else if (f->maxntid[0] && threads > (unsigned long)f->maxntid[0] * f->maxntid[1] * f->maxntid[2]) {
    why = "more threads than the kernel's .maxntid";
    r = INVALID_VALUE;
  } else if (!gx || !gy || !gz || gx > 2147483647u || gy > 65535 || gz > 65535) {
    why = "grid shape";
    r = INVALID_VALUE;
  } else if (f->max_dynamic_smem < 0 ? smem + f->static_smem > SMEM_DEFAULT
                                       : smem > (unsigned)f->max_dynamic_smem) {
    why = "shared memory";
    r = LAUNCH_OUT_OF_RESOURCES;
  } else if (f->registers) {
    // As NVIDIA's occupancy calculator (cuda_occupancy.h) checks a block: registers are given
    // per warp, and to the SM's four sub-partitions alike, so the warps count in fours.
    unsigned long warps = ((threads + 31) / 32 + 3) / 4 * 4;
    if (warps * warp_registers(f->registers) > REGS_PER_SM) {
      why = "registers";
      r = LAUNCH_OUT_OF_RESOURCES;
    }
  }
  unsigned shape[7] = {gx, gy, gz, bx, by, bz, smem};
  int seen = 0;
  pthread_mutex_lock(&lock);
  launches++;
  device_ms += 0.004 + 1e-9 * threads * gx * gy * gz;
  for (int i = 0; i < SHAPES && !seen; i++) seen = !memcmp(f->shapes[i], shape, sizeof shape);
  if (!seen) memcpy(f->shapes[f->next_shape++ % SHAPES], shape, sizeof shape);
  pthread_mutex_unlock(&lock);
  // Each function's launch shapes, once each (a probe launches one kernel millions of times).
  if (!seen || why)
    logf_("launch %s grid %u,%u,%u block %u,%u,%u smem %u+%d regs %d%s%s", f->name, gx, gy, gz, bx,
          by, bz, smem, f->static_smem, f->registers, why ? " REFUSED: " : "", why ? why : "");
  if (why)
    fprintf(stderr, "fakecuda: launch of %s refused (%s): grid %u,%u,%u block %u,%u,%u, %u + %d bytes "
            "shared, %d registers\n", f->name, why, gx, gy, gz, bx, by, bz, smem, f->static_smem,
            f->registers);
  return r;
}
CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                        unsigned bz, unsigned smem, CUstream s, void **params, void **extra) {
  (void)s; (void)params; (void)extra;
  return launch(f, gx, gy, gz, bx, by, bz, smem);
}
typedef struct {
  unsigned gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes;
  CUstream hStream;
  void *attrs;
  unsigned numAttrs;
} CUlaunchConfig;
CUresult cuLaunchKernelEx(const CUlaunchConfig *c, void *f, void **params, void **extra) {
  (void)params; (void)extra;
  return launch(f, c->gridDimX, c->gridDimY, c->gridDimZ, c->blockDimX, c->blockDimY, c->blockDimZ,
                c->sharedMemBytes);
}
CUresult cuTensorMapEncodeTiled(void *map, int type, unsigned rank, void *addr, const void *dims,
                                const void *strides, const void *box, const void *elem_strides,
                                int interleave, int swizzle, int l2, int oob) {
  (void)type; (void)rank; (void)addr; (void)dims; (void)strides; (void)box; (void)elem_strides;
  (void)interleave; (void)swizzle; (void)l2; (void)oob;
  memset(map, 0, 128);
  return SUCCESS;
}

// --- graphs: not captured -----------------------------------------------------------------
CUresult cuStreamBeginCapture_v2(CUstream s, int mode) { (void)s; (void)mode; return NOT_SUPPORTED; }
CUresult cuStreamBeginCapture(CUstream s, int mode) { (void)s; (void)mode; return NOT_SUPPORTED; }

__attribute__((destructor)) static void summary(void) {
  logf_("summary modules %d rejected %d launches %ld", modules_loaded, modules_rejected, launches);
}
