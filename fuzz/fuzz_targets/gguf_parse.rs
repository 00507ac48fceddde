//! `GgufFile::parse` on arbitrary bytes: never a panic, an out-of-bounds read
//! or a huge allocation, only `Ok` or a documented error. For every tensor of
//! a file that parses, a layer built from it (when its type and shape allow)
//! holds exactly the tensor's bytes, and its forward pass is the same on every
//! ISA as on the scalar path.
#![no_main]

use blockq::gguf::GgufFile;
use blockq::{dispatch, first_difference, Isa};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::parse(data) else {
        return;
    };
    for t in file.tensors() {
        let Ok(bytes) = file.tensor_data(&t.name) else {
            continue;
        };
        let Ok(layer) = file.linear(&t.name, None) else {
            continue;
        };
        assert_eq!(
            layer.to_gguf_bytes(),
            bytes,
            "tensor {}: bytes differ",
            t.name
        );
        // Keep each case small: forward only layers of modest size.
        if layer.in_features * layer.out_features > 1 << 16 {
            continue;
        }
        let x: Vec<f32> = (0..layer.in_features)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.03)
            .collect();
        let want = layer
            .clone()
            .with_isa(Isa::Scalar)
            .unwrap()
            .forward_f32(&x, 1);
        for isa in dispatch::available() {
            let got = layer.clone().with_isa(isa).unwrap().forward_f32(&x, 1);
            assert_eq!(
                first_difference(&got, &want),
                None,
                "tensor {}: {isa} vs scalar",
                t.name
            );
        }
    }
});
