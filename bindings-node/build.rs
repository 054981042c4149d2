fn main() {
    // Platform link set-up for a Node-API addon (e.g. `-undefined dynamic_lookup` on macOS).
    napi_build::setup();
}
