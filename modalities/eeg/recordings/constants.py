"""The sleep constants, declared once: stage classes, epoch length, rates, the PC18 electrodes and
stage notes, and the stage spellings of scoring files.

Stage codes are the label values of the prepared format and of every :class:`Hypnogram`:
0 W, 1 N1, 2 N2, 3 N3, 4 REM (``CLASS_NAMES`` order), and ``UNLABELLED`` (-1) for an epoch
without a usable stage (unscored, movement, no signal).
"""
from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("W", "N1", "N2", "N3", "REM")  # stage code -> name
W, N1, N2, N3, REM = range(len(CLASS_NAMES))
UNLABELLED = -1  # an epoch / window without a (single) scored stage
EPOCH_S = 30.0  # s: the scoring epoch, and the model's window
TARGET_FS = 100.0  # Hz: the rate of the prepared windows
FLAT_STD_UV = 0.1  # uV: a window-channel whose std is below this has no signal (flat)
NORM_EPS_UV = 1e-6  # uV: added to each window's std before the z-score
MIN_FS = 60.0  # Hz: a channel must be sampled faster (the band-pass's 30 Hz edge needs Nyquist > 30 Hz)

# PhysioNet/CinC 2018: the six EEG channels (names in the .hea files, uV) and the stage notes
# (aux_note of the .arousal files) -> stage code
PC18_EEG_CHANNELS: tuple[str, ...] = ("F3-M2", "F4-M1", "C3-M2", "C4-M1", "O1-M2", "O2-M1")
PC18_STAGE_NOTES: dict[str, int] = {"W": W, "N1": N1, "N2": N2, "N3": N3, "R": REM}
PC18_WINDOW_SHAPE = (len(PC18_EEG_CHANNELS), int(EPOCH_S * TARGET_FS))  # (C, L) of a prepared window

# Stage spellings of scoring files (case, "_" and repeated spaces ignored; hypnogram_io.classify_stage).
# These may also carry a "Stage " / "Sleep stage " prefix (Sleep-EDF: "Sleep stage W/1/2/3/4/R");
# R&K stages 3 and 4 are both N3, so with a prefix "4" is always N3.
PREFIXED_SPELLINGS: dict[int, tuple[str, ...]] = {
    W: ("w", "wake", "awake", "0"),
    N1: ("n1", "s1", "nrem1", "nrem 1", "1"),
    N2: ("n2", "s2", "nrem2", "nrem 2", "2"),
    N3: ("n3", "n4", "s3", "s4", "nrem3", "nrem4", "nrem 3", "nrem 4", "3", "4"),
    REM: ("r", "rem"),
    UNLABELLED: ("?", "m", "mt", "movement", "movement time", "unscored"),
}
STAGE_PREFIXES: tuple[str, ...] = ("stage ", "sleep stage ")
# Bare integers of text files: 0-4 with 4 = REM, or R&K exports holding a 5 (then 4 = N3, 5 = REM)
BARE_REM: tuple[str, ...] = ("4", "5")
# Deliberately unscored without prefix (-1, not "unknown"): R&K movement / unscored codes, artefacts
UNSCORED_SPELLINGS: tuple[str, ...] = ("", "-1", "6", "9", "unlabelled", "unlabeled", "not scored", "artifact",
                                       "artefact", "uns", "art")
# The label Sleep-EDF hypnograms use for each stage code (written by hypnogram_edf.write_hypnogram_edf)
SLEEP_EDF_LABELS: dict[int, str] = {W: "Sleep stage W", N1: "Sleep stage 1", N2: "Sleep stage 2",
                                    N3: "Sleep stage 3", REM: "Sleep stage R", UNLABELLED: "Sleep stage ?"}
UNSCORED_NAME = "unscored"  # the stage column of a hypnogram CSV for an epoch without a stage

# Partial no-signal epochs (recordings/flatness.py): a stretch of a channel holding one value for at least
# FLAT_RUN_S (zeros, a dropout, a channel saturated at a constant), or at the channel's extreme values (clipped
# at its max/min), has no signal. An epoch-channel with no signal for more than FLAT_EPOCH_SHARE of the epoch
# counts as flat (like one whose std is below the card's flat_std_uv); an epoch flat on every channel is left
# unscored. part-stage warns about a channel flat or clipped in more than FLAT_CHANNEL_WARN_SHARE of the epochs.
FLAT_RUN_S = 1.0  # s
FLAT_EPOCH_SHARE = 0.25  # of the epoch's duration
FLAT_CHANNEL_WARN_SHARE = 0.10  # of the epochs
