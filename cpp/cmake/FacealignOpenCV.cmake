# OpenCV's core, imgproc and imgcodecs as the targets opencv_core / opencv_imgproc / opencv_imgcodecs.
# Uses OpenCVConfig.cmake when there is one; otherwise finds the headers and libraries directly, because
# Debian ships OpenCVConfig.cmake only in libopencv-dev, which pulls in every OpenCV module (VTK, Qt, ...)
# while this library needs three (libopencv-{core,imgproc,imgcodecs}-dev). Installed with the package.
find_package(OpenCV QUIET COMPONENTS core imgproc imgcodecs)
if(NOT OpenCV_FOUND)
  find_path(FACEALIGN_OPENCV_INCLUDE_DIR opencv2/core.hpp PATH_SUFFIXES opencv4)
  foreach(module core imgproc imgcodecs)
    if(NOT TARGET opencv_${module})
      find_library(FACEALIGN_OPENCV_${module} opencv_${module})
      if(NOT FACEALIGN_OPENCV_INCLUDE_DIR OR NOT FACEALIGN_OPENCV_${module})
        message(FATAL_ERROR "OpenCV ${module} not found: apt-get install libopencv-${module}-dev (or set OpenCV_DIR)")
      endif()
      add_library(opencv_${module} UNKNOWN IMPORTED)
      set_target_properties(opencv_${module} PROPERTIES IMPORTED_LOCATION "${FACEALIGN_OPENCV_${module}}"
                                                         INTERFACE_INCLUDE_DIRECTORIES "${FACEALIGN_OPENCV_INCLUDE_DIR}")
    endif()
  endforeach()
endif()
