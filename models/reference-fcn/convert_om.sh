#!/bin/sh
# Convert model.onnx to model.om for the Ascend 310 NPU (Atlas 200 DK) with ATC.
# Prerequisites: a machine with the CANN toolkit (ATC) installed, and its environment loaded, e.g.
#   . /usr/local/Ascend/ascend-toolkit/set_env.sh   (or ${HOME}/Ascend/ascend-toolkit/set_env.sh)
# The toolkit version should match the CANN runtime on the board, or the .om will not load.
# Run from anywhere; the command works in this bundle's folder.  Output: model.om (not kept in git).
# AIPP: aipp.cfg makes the model take NV12 (YUV420SP_U8) input and convert it to RGB on the NPU.
set -e
cd "$(dirname "$0")"
atc --model=model.onnx --framework=5 --output=model --soc_version=Ascend310 --input_shape="image:1,3,512,512" --input_format=NCHW --insert_op_conf=aipp.cfg --output_type=FP32 --log=error
