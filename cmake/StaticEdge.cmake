# One lean strata-edge binary: the edge agent links its dependencies (gRPC, protobuf, abseil,
# OpenSSL, Paho C, SQLite, yaml-cpp, libstdc++) from Debian's static archives, so that a gateway
# maps only the code it runs rather than the whole of each shared library (docs/benchmarks.md,
# (8)). Everything else (strata-cloud, the tests, the tools) links the shared libraries.
#
# Libraries that strata-edge links name their dependencies through strata_deps(): each
# consumer gets the shared targets, except a target with the STRATA_STATIC_LINK property, which
# gets strata::static_deps instead (the property is read on the consumer: a generator
# expression in usage requirements is evaluated for the target being linked).

option(STRATA_STATIC_EDGE "Link strata-edge against static archives of its dependencies" ON)
if(STRATA_SANITIZE OR STRATA_TSAN)
  set(STRATA_STATIC_EDGE OFF)  # the sanitizer runtimes want the shared C++ runtime
endif()

set(_strata_static "$<BOOL:$<TARGET_PROPERTY:STRATA_STATIC_LINK>>")

# strata_deps(<var> <shared targets>...)
function(strata_deps var)
  set(items)
  foreach(t IN LISTS ARGN)
    list(APPEND items "$<$<NOT:${_strata_static}>:${t}>")
  endforeach()
  list(APPEND items "$<${_strata_static}:strata::static_deps>")
  set(${var} ${items} PARENT_SCOPE)
endfunction()

add_library(strata_static_deps INTERFACE)
add_library(strata::static_deps ALIAS strata_static_deps)
if(STRATA_STATIC_EDGE)
  set(_archives)
  set(_missing)
  foreach(name grpc++ grpc gpr upb address_sorting cares re2 protobuf ssl crypto z sqlite3 yaml-cpp
               boost_system paho-mqtt3as)
    find_library(STRATA_STATIC_${name} NAMES lib${name}.a)
    if(STRATA_STATIC_${name})
      list(APPEND _archives ${STRATA_STATIC_${name}})
    else()
      list(APPEND _missing lib${name}.a)
    endif()
  endforeach()
  if(_missing)
    # tools/install-deps.sh installs them all; elsewhere, a working shared build beats none.
    message(WARNING "strata-edge links the shared libraries: ${_missing} not found")
    set(STRATA_STATIC_EDGE OFF)
  endif()
endif()
if(STRATA_STATIC_EDGE)
  # abseil is some forty archives; the linker takes only what is referenced.
  get_filename_component(_libdir ${STRATA_STATIC_grpc} DIRECTORY)
  file(GLOB _absl ${_libdir}/libabsl_*.a)
  list(FILTER _absl EXCLUDE REGEX "(test_util|failure_signal_handler|scoped_set_env|flags_)")
  list(APPEND _archives ${_absl})
  # Order within the group does not matter: the linker rescans it until nothing new resolves.
  target_link_libraries(strata_static_deps INTERFACE "$<LINK_GROUP:RESCAN,${_archives}>"
                        ${CMAKE_DL_LIBS} m rt Threads::Threads)
endif()

# strata_static_executable(<target>): link <target> against the static archives.
function(strata_static_executable target)
  if(NOT STRATA_STATIC_EDGE)
    return()
  endif()
  set_target_properties(${target} PROPERTIES STRATA_STATIC_LINK ON)
  target_link_options(${target} PRIVATE -static-libstdc++ -static-libgcc
                      # drop unreferenced functions; pack the PIE's relative relocations (DT_RELR),
                      # so start-up touches a few KiB of them rather than 450 KiB
                      LINKER:--gc-sections LINKER:-z,pack-relative-relocs)
endfunction()
