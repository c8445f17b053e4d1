# test_names.cmake - the TEST(name) functions of one test source, as ctest will run them.
#
# tests/CMakeLists.txt registers every TEST(name) of tests/<area>/test_*.c as the ctest test
# <program>.<name>, run as `<program> <name>` (testlib.h). A TEST line it could not read -
# a name outside [a-z0-9_]+, an indented TEST, a space before the parenthesis - would be
# compiled and then never run, silently. So every line that opens a TEST is read here, and
# one that does not name a test ctest can run is a configure error naming the file and the
# test; so is a name used twice in one file. testlib.c refuses the same names at run time.
#
# Also runs as a script, for the harness's own test:
#   cmake -DFILE=<source> -P test_names.cmake    prints the names, or fails as configure would

if(CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE)
  cmake_minimum_required(VERSION 3.18) # the project's policies, for IN_LIST
endif()

# Sets out (in the caller's scope) to the test names of file, in order.
function(workerd_test_names file out)
  file(STRINGS "${file}" lines REGEX "^[ \t]*TEST[ \t]*\\(")
  set(names "")
  foreach(line IN LISTS lines)
    if(NOT line MATCHES "^[ \t]*TEST[ \t]*\\(")
      continue() # a piece of a line that held a semicolon
    endif()
    if(NOT line MATCHES "^TEST\\(([a-z0-9_]+)\\)")
      string(STRIP "${line}" shown)
      # Lines that start with a space are not re-wrapped by message().
      message(FATAL_ERROR " ${file}: '${shown}' is not a test ctest can run\n"
        " (write TEST(name) at the start of a line, the name in [a-z0-9_]+)")
    endif()
    set(name "${CMAKE_MATCH_1}")
    if(name IN_LIST names)
      message(FATAL_ERROR " ${file}: TEST(${name}) is defined twice")
    endif()
    list(APPEND names "${name}")
  endforeach()
  set(${out} "${names}" PARENT_SCOPE)
endfunction()

if(CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE)
  if(NOT DEFINED FILE)
    message(FATAL_ERROR "usage: cmake -DFILE=<test source> -P test_names.cmake")
  endif()
  workerd_test_names("${FILE}" names)
  foreach(name IN LISTS names)
    message("${name}")
  endforeach()
endif()
