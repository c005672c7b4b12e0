# Finds OpenCV, nlohmann_json and the inference runtimes; sets FACEALIGN_BACKENDS (the backends built).
# A runtime that is not found leaves its backend out with a message saying what is missing.
include(GNUInstallDirs)

include(FacealignOpenCV)
find_package(nlohmann_json 3 REQUIRED)

# Ask the Python environment where a wheel is (the runtimes come as pip wheels here).
function(facealign_wheel_dir out module subdir)
  set(${out} "" PARENT_SCOPE)
  if(FACEALIGN_PYTHON)
    execute_process(
      COMMAND "${FACEALIGN_PYTHON}" -c "import importlib.util, os; s = importlib.util.find_spec('${module}'); print(os.path.join(os.path.dirname(s.origin), '${subdir}') if s else '')"
      OUTPUT_VARIABLE dir OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(dir AND EXISTS "${dir}")
      set(${out} "${dir}" PARENT_SCOPE)
    endif()
  endif()
endfunction()

set(FACEALIGN_BACKENDS "")

# ONNX Runtime: headers (Debian's libonnxruntime-dev, unpacked by cpp/build.sh) + the wheel's library,
# opened with dlopen at run time.
if(FACEALIGN_WITH_ONNXRUNTIME)
  facealign_wheel_dir(_ort_capi onnxruntime capi)
  set(ONNXRUNTIME_LIBRARY_DIR "${_ort_capi}" CACHE PATH "Folder with libonnxruntime.so* (the onnxruntime wheel's capi/)")
  find_path(ONNXRUNTIME_INCLUDE_DIR onnxruntime_cxx_api.h PATH_SUFFIXES onnxruntime
            HINTS "${ONNXRUNTIME_ROOT}/include" "${ONNXRUNTIME_ROOT}/usr/include")
  if(ONNXRUNTIME_INCLUDE_DIR AND ONNXRUNTIME_LIBRARY_DIR)
    list(APPEND FACEALIGN_BACKENDS onnxruntime)
    message(STATUS "facealign: ONNX Runtime backend: headers ${ONNXRUNTIME_INCLUDE_DIR}, library from ${ONNXRUNTIME_LIBRARY_DIR}")
  else()
    message(WARNING "facealign: ONNX Runtime backend NOT built: need onnxruntime_cxx_api.h (set ONNXRUNTIME_ROOT; "
                    "cpp/build.sh unpacks Debian's libonnxruntime-dev) and the onnxruntime wheel (set FACEALIGN_PYTHON "
                    "or ONNXRUNTIME_LIBRARY_DIR)")
  endif()
endif()

if(FACEALIGN_WITH_OPENVINO)
  facealign_wheel_dir(_ov_cmake openvino cmake)
  find_package(OpenVINO QUIET COMPONENTS Runtime HINTS "${_ov_cmake}")
  if(OpenVINO_FOUND)
    list(APPEND FACEALIGN_BACKENDS openvino)
    message(STATUS "facealign: OpenVINO backend: OpenVINO ${OpenVINO_VERSION} (${OpenVINO_DIR})")
  else()
    message(WARNING "facealign: OpenVINO backend NOT built: OpenVINOConfig.cmake not found (pip install openvino "
                    "and set FACEALIGN_PYTHON, or set OpenVINO_DIR)")
  endif()
endif()

# TensorRT 10: NvInfer.h + libnvinfer + the CUDA runtime.
if(FACEALIGN_WITH_TENSORRT)
  find_path(TENSORRT_INCLUDE_DIR NvInfer.h HINTS "${TENSORRT_ROOT}/include" PATH_SUFFIXES x86_64-linux-gnu)
  find_library(TENSORRT_LIBRARY nvinfer HINTS "${TENSORRT_ROOT}/lib" "${TENSORRT_ROOT}/lib64")
  find_package(CUDAToolkit QUIET)
  if(TENSORRT_INCLUDE_DIR AND TENSORRT_LIBRARY AND CUDAToolkit_FOUND)
    list(APPEND FACEALIGN_BACKENDS tensorrt)
    message(STATUS "facealign: TensorRT backend: ${TENSORRT_LIBRARY}, CUDA ${CUDAToolkit_VERSION}")
  else()
    message(STATUS "facealign: TensorRT backend NOT built: TensorRT (NvInfer.h, libnvinfer) and the CUDA toolkit "
                   "were not found (set TENSORRT_ROOT); the ort and openvino backends are unaffected")
  endif()
endif()

if(NOT FACEALIGN_BACKENDS)
  message(FATAL_ERROR "facealign: no inference backend found (see the messages above)")
endif()
