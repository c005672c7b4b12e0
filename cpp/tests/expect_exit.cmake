# cmake -DCMD=program -DARG=argument -DEXPECT=code -P expect_exit.cmake: fails unless CMD ARG exits with EXPECT.
execute_process(COMMAND "${CMD}" "${ARG}" RESULT_VARIABLE code OUTPUT_QUIET ERROR_QUIET)
if(NOT code EQUAL EXPECT)
  message(FATAL_ERROR "${CMD} ${ARG}: exit code ${code}, expected ${EXPECT}")
endif()
