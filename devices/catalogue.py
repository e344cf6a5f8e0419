"""Device profiles calibrated from published measurements; every constant names its source.

NoNN = Bhardwaj, Lin, Marculescu, "Memory- and Communication-Aware Model Compression for
Distributed Deep Learning Inference on IoT", ACM TECS 18(5s), 2019. Its tables 6 and 7 give
per-device latency and energy for a 167 MFLOP student and a 2.6 GFLOP teacher. Its "FLOPs" are
assumed to be counted as PyTorch profilers count them (2 per multiply-accumulate): an assumption,
the paper does not say.
"""

from __future__ import annotations

from dataclasses import replace

from .profile import DeviceProfile

_KIB = 1 << 10
_GIB = 1 << 30

_NONN = "NoNN (Bhardwaj, Lin, Marculescu, ACM TECS 2019)"

_PROFILES = (
    DeviceProfile(
        name="rpi3_400mhz",
        memory_bytes=1 * _GIB,  # Raspberry Pi 3 Model B: 1 GiB LPDDR2 (product brief)
        # NoNN table 6/7: 167 MFLOP student, 2-split compute 101.91 ms -> 1.639e9 FLOP/s.
        # (Teacher: 2.6 GFLOP in 1405 ms -> 1.85e9 FLOP/s; the student figure is used.)
        flops_per_s=167e6 / 101.91e-3,
        # NoNN: teacher 3430.67 mJ / 1405 ms = 2.44 W (compute-dominated run);
        # student 238.98 mJ / 115 ms = 2.08 W (includes communication).
        compute_w=2.4,
        # Estimate: idle 1.4 W + WiFi TX burst; WiFi (hostapd) adds ~0.1-0.5 W over idle.
        transmit_w=1.9,
        receive_w=1.7,  # estimate: idle + WiFi RX, below TX
        # Measured Pi 3B idle ~260 mA at 5 V = 1.3-1.4 W (pidramble.com power benchmarks;
        # raspi.tv 2016 and Xtronix measured 1.2-1.6 W headless).
        idle_w=1.4,
        source=(
            f"Raspberry Pi 3 Model B at 400 MHz, 1 GiB RAM. Compute rate from {_NONN} tables 6-7: "
            "167 MFLOP student in 101.91 ms (2S) -> 1.639e9 FLOP/s (student figure used; teacher "
            "2.6 GFLOP/1405 ms gives 1.85e9). FLOPs assumed counted as PyTorch does (2 per MAC). "
            "compute_w 2.4 W from NoNN teacher energy 3430.67 mJ/1405 ms = 2.44 W (student: "
            "238.98 mJ/115 ms = 2.08 W). idle_w 1.4 W: published Pi 3B idle ~260 mA at 5 V "
            "(pidramble.com power benchmarks). transmit_w 1.9 W / receive_w 1.7 W: estimates, "
            "idle plus a few hundred mW for the on-board WiFi radio. Network interface: 10/100 "
            "Ethernet port (product brief) -> nic_bps 1e8; message_s 3.678 ms fitted to NoNN table "
            "7's 2-student communication (13.10 ms: 3 messages through the server plus two "
            "12,288-byte images at 100 Mbit/s, 1.025 ms each)."
        ),
        # The server sends one message at a time: NoNN-2S communication = 3 messages (two images,
        # the last student's features) = 3 x message_s + 2 x 1.0248 ms + 0.0174 ms of airtime
        # (1460-byte segments, 58-byte headers) = 13.10 ms (table 7) -> 3.678 ms.
        message_s=3.678e-3,
        nic_bps=1e8,  # Raspberry Pi 3 Model B: 10/100 Ethernet (product brief)
    ),
    DeviceProfile(
        name="odroid_xu4",
        memory_bytes=2 * _GIB,  # Hardkernel Odroid-XU4: 2 GiB LPDDR3 (product page)
        # NoNN table 6/7: 167 MFLOP student in 19.01 ms -> 8.78e9 FLOP/s.
        flops_per_s=167e6 / 19.01e-3,
        # NoNN: student 219.07 mJ / 25 ms = 8.76 W; teacher 3084.08 mJ / 224 ms = 13.8 W.
        compute_w=8.8,
        # Estimate: no on-board radio; a USB WiFi adapter adds ~0.5-0.8 W over idle.
        transmit_w=3.5,
        receive_w=3.2,
        idle_w=2.7,  # estimate: community measurements of an idle XU4 at 5 V are ~2-3 W
        source=(
            f"Odroid-XU4 (Exynos 5422, big cores 2 GHz, 2 GiB RAM). {_NONN} tables 6-7: 167 MFLOP "
            "student in 19.01 ms -> 8.78e9 FLOP/s (FLOPs assumed 2 per MAC); energy 219.07 mJ/25 ms "
            "= 8.76 W -> compute_w 8.8 W (teacher run: 3084.08 mJ/224 ms = 13.8 W). idle_w 2.7 W: "
            "estimate from community idle measurements (~2-3 W at 5 V). transmit_w 3.5 W / "
            "receive_w 3.2 W: estimates, idle plus a USB WiFi adapter (~0.5-0.8 W). Network "
            "interface: gigabit Ethernet (product page) -> nic_bps 1e9; message_s 1.931 ms fitted to "
            "NoNN table 7's 2-student communication (6.00 ms: 3 messages through the server plus two "
            "images at 1 Gbit/s, 0.102 ms each)."
        ),
        # as the Pi's: 3 x message_s + 2 x 0.1025 ms + 0.0017 ms of airtime = 6.00 ms (table 7)
        message_s=1.931e-3,
        nic_bps=1e9,  # Hardkernel Odroid-XU4: Gigabit Ethernet (product page)
    ),
    DeviceProfile(
        name="cortex_m7_512kb",
        memory_bytes=512 * _KIB,  # STM32F767: 512 KB SRAM (ST datasheet DS11532)
        # Assumption: ~1 FLOP/cycle sustained (single-precision FPU, CMSIS-NN-style kernels)
        # at 216 MHz (STM32F767 maximum core clock, DS11532).
        flops_per_s=216e6,
        # ~100 mA typical Run-mode supply current at 216 MHz x 3.3 V (order of DS11532 table;
        # depends on peripherals and code location).
        compute_w=0.33,
        # Estimate: MCU sleeping (DMA feeds the radio) + 2.4 GHz radio. nRF52840 product
        # spec: TX +8 dBm 14.8 mA, RX 1 Mbps 4.6 mA at 3 V (DC/DC) -> 0.044 W / 0.014 W.
        transmit_w=0.055,
        receive_w=0.025,
        idle_w=0.01,  # estimate: low-power sleep, ~3 mA at 3.3 V
        source=(
            "Cortex-M7 MCU class, e.g. STM32F767 at 216 MHz with 512 KB SRAM (ST DS11532). "
            "flops_per_s 2.16e8 assumes ~1 FLOP/cycle sustained with CMSIS-NN-style kernels "
            "(assumption). compute_w 0.33 W: ~100 mA typical Run-mode current at 216 MHz x 3.3 V "
            "(DS11532, approximate). idle_w 0.01 W: sleep estimate. transmit_w 0.055 W / "
            "receive_w 0.025 W: idle plus an 802.15.4/BLE radio, nRF52840 product specification "
            "TX +8 dBm 14.8 mA, RX 4.6 mA at 3 V (CC2538 draws more: ~24 mA TX, ~20 mA RX)."
        ),
    ),
    DeviceProfile(
        name="edge_server",
        memory_bytes=16 * _GIB,  # estimate: typical Core i7 desktop configuration
        # NoNN table 7: 2-split teacher (2.6 GFLOP) compute 86 ms on the server -> 3.0e10 FLOP/s.
        flops_per_s=2.6e9 / 86e-3,
        compute_w=65.0,  # estimate: desktop Core i7 TDP class (65 W parts)
        transmit_w=22.0,  # estimate: idle + ~2 W for the network interface
        receive_w=22.0,
        idle_w=20.0,  # estimate: typical idle of a desktop PC without discrete GPU
        source=(
            f"x86 desktop (Core i7) as the server in {_NONN}: table 7, 2-split teacher of 2.6 GFLOP "
            "computes in 86 ms -> 3.0e10 FLOP/s (FLOPs assumed 2 per MAC). 16 GiB memory, compute_w "
            "65 W (TDP class), idle_w 20 W, transmit/receive 22 W (idle + ~2 W NIC): estimates."
        ),
    ),
)


def _pytorch_pi(pi: DeviceProfile) -> DeviceProfile:
    """The Pi running PyTorch instead of TVM binaries: NoNN's table 8 (split ATKD) was measured so."""
    return replace(
        pi,
        name="rpi3_400mhz_pytorch",
        # NoNN section 6.2.2 (footnote 4): NoNN-8S takes 850 ms in PyTorch 0.4.1 against 150 ms
        # with TVM. Taking its communication as table 7's (43.76 ms, the same TCP wrapper), a
        # 167 MFLOP student computes in 806.24 ms -> 2.071e8 FLOP/s, 7.9x slower than with TVM.
        flops_per_s=167e6 / (850e-3 - 43.76e-3),
        source=(
            f"{pi.name} running PyTorch 0.4.1 rather than TVM binaries, as {_NONN} measured its table 8 "
            "(split ATKD): NoNN-8S in 850 ms (footnote 4) less table 7's 43.76 ms of communication -> "
            "167 MFLOP in 806.24 ms = 2.071e8 FLOP/s. Power and network interface as the TVM profile "
            "(not measured apart). " + pi.source
        ),
    )


_PI = next(p for p in _PROFILES if p.name == "rpi3_400mhz")
CATALOGUE: dict[str, DeviceProfile] = {p.name: p for p in (*_PROFILES, _pytorch_pi(_PI))}
BUILT_IN = frozenset(CATALOGUE)


def register(profile: DeviceProfile) -> None:
    """Add a user's profile (defined in YAML, `devices.NAME`) to the catalogue, or replace the
    user profile of that name; a built-in profile cannot be redefined."""
    if profile.name in BUILT_IN:
        raise ValueError(f"{profile.name!r} is a built-in profile; give yours another name")
    CATALOGUE[profile.name] = profile


def get_profile(name: str) -> DeviceProfile:
    """The catalogue profile `name`; ValueError listing allowed names otherwise."""
    try:
        return CATALOGUE[name]
    except (KeyError, TypeError):
        pass
    raise ValueError(f"unknown device profile {name!r}; allowed: {', '.join(sorted(CATALOGUE))}")
