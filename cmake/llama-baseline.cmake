# The CPU baseline (PPLUG_LLAMA_BASELINE, included from CMakeLists.txt):
# ggml and libllama configured as llama.cpp's own CMake build configures them
# at the pinned commit with its default options, and llama-cbench over them.
# Everything is set inside functions, so nothing leaks into the GPU targets.

# pplug_baseline_ggml adds ggml/src with the values of the options that
# llama.cpp's and ggml's top-level CMakeLists.txt (absent from the module)
# would give them by default.
function(pplug_baseline_ggml)
    # The file-wide presets are pplug's (hidden symbols, install rpath);
    # upstream builds with the toolchain's defaults.
    unset(CMAKE_C_VISIBILITY_PRESET)
    unset(CMAKE_CXX_VISIBILITY_PRESET)
    set(CMAKE_VISIBILITY_INLINES_HIDDEN OFF)
    set(CMAKE_C_STANDARD 11)
    set(CMAKE_C_STANDARD_REQUIRED ON)
    set(CMAKE_CXX_STANDARD 17)
    set(CMAKE_CXX_STANDARD_REQUIRED ON)
    set(THREADS_PREFER_PTHREAD_FLAG ON)
    find_package(Threads REQUIRED)

    set(BUILD_SHARED_LIBS ON)        # upstream's default off MinGW/Emscripten
    set(GGML_BACKEND_DL OFF)         # the CPU backend is linked into libggml
    set(GGML_CPU ON)
    set(GGML_CPU_ALL_VARIANTS OFF)
    set(GGML_NATIVE ON)              # -march=native for ggml-cpu
    set(GGML_OPENMP ON)              # OpenMP keeps the worker threads
    set(GGML_LLAMAFILE ON)           # llama.cpp turns it on for ggml
    set(GGML_CPU_REPACK ON)
    set(GGML_CPU_KLEIDIAI OFF)
    set(GGML_CPU_HBM OFF)
    set(GGML_ACCELERATE ON)
    set(GGML_LTO OFF)
    set(GGML_STATIC OFF)
    set(GGML_CCACHE OFF)             # a compiler cache only: no effect on the code
    set(GGML_ALL_WARNINGS OFF)       # warnings only: no effect on the code
    set(GGML_SCHED_MAX_COPIES 4)
    set(GGML_VERSION_MAJOR 0)
    set(GGML_VERSION "0.0.0")
    add_subdirectory("${PPLUG_GGML_DIR}/src" "${CMAKE_BINARY_DIR}/baseline/ggml")
    if (NOT GGML_OPENMP_ENABLED)
        message(FATAL_ERROR "PPLUG_LLAMA_BASELINE: OpenMP not found, and upstream's build uses it: "
                            "install the compiler's OpenMP runtime (gcc: libgomp, part of gcc; "
                            "clang: libomp-dev) and configure again")
    endif()
    target_compile_definitions(ggml-base PRIVATE
        GGML_VERSION="${GGML_VERSION}" GGML_COMMIT="${PPLUG_LLAMA_COMMIT}")
endfunction()

# pplug_baseline_llama adds libllama as llama.cpp's src/CMakeLists.txt
# defines it: every source of src/ and src/models/.
function(pplug_baseline_llama)
    unset(CMAKE_CXX_VISIBILITY_PRESET)
    set(CMAKE_VISIBILITY_INLINES_HIDDEN OFF)
    file(GLOB llama_srcs CONFIGURE_DEPENDS
         "${PPLUG_LLAMA_DIR}/src/*.cpp" "${PPLUG_LLAMA_DIR}/src/models/*.cpp")
    add_library(llama SHARED ${llama_srcs})
    target_include_directories(llama PRIVATE "${PPLUG_LLAMA_DIR}/src")
    target_include_directories(llama PUBLIC "${PPLUG_LLAMA_DIR}/include")
    target_compile_features(llama PRIVATE cxx_std_17)
    target_link_libraries(llama PUBLIC ggml)
    set_target_properties(llama PROPERTIES POSITION_INDEPENDENT_CODE ON)
    target_compile_definitions(llama PRIVATE LLAMA_BUILD)
    target_compile_definitions(llama PUBLIC LLAMA_SHARED)
endfunction()

# llama-cbench: the plain C benchmark loop (bench/cbaseline), with llama.cpp's
# defaults (no threadpool attached: OpenMP's threads are the workers).
function(pplug_baseline_cbench)
    unset(CMAKE_C_VISIBILITY_PRESET)
    add_executable(llama-cbench "${CMAKE_CURRENT_SOURCE_DIR}/bench/cbaseline/llama-cbench.c")
    set_target_properties(llama-cbench PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON)
    target_compile_definitions(llama-cbench PRIVATE CBENCH_COMMIT="${PPLUG_LLAMA_COMMIT}")
    target_link_libraries(llama-cbench PRIVATE llama ggml)
    find_library(PPLUG_MATH_LIBRARY m)
    if (PPLUG_MATH_LIBRARY)
        target_link_libraries(llama-cbench PRIVATE ${PPLUG_MATH_LIBRARY})  # sqrt
    endif()
endfunction()

pplug_baseline_ggml()
pplug_baseline_llama()
pplug_baseline_cbench()
