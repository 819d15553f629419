"""The state of a study that the collection app serves: the manifest, each observer's plan and answer file, the
current trial, the recording of an answer, the manifest's images, and the app's pages."""

from __future__ import annotations

import html
import math
import os
import stat
import threading
from datetime import datetime, timezone
from http import HTTPStatus
from importlib import resources
from pathlib import Path

from lossbench.userstudy.answers import ObserverFile, StorageError, check_observer, read_answers, sync_folder
from lossbench.userstudy.sampler import ActiveSampler
from lossbench.userstudy.sessions import Sessions
from lossbench.userstudy.stimuli import MANIFEST, PlannedTrial, load_manifest, plan
from lossbench.userstudy.viewing import instructions, recorded

#: Time per comparison that the start page's duration assumes: a few flicker cycles and a choice.
SECONDS_PER_COMPARISON = 10
#: How the app chooses each observer's trials: every trial in a seeded order, or by expected information gain.
SAMPLINGS = ("full", "active")
#: The folder of the practice answers inside a responses folder: no ``*.jsonl`` of the folder itself, so the analysis
#: (:func:`lossbench.userstudy.responses.read_folder`, which reads ``<responses>/*.jsonl`` only) never counts them.
PRACTICE = ".practice"
#: The id of the k-th practice trial (k from 1); no manifest trial is so named, as the manifest's ids are ``t<n>``.
PRACTICE_ID = "practice-{}"
_PAGES = {"/": "index.html", "study": "study.html", "unknown": "unknown.html", "notice": "notice.html"}


def render(name: str, **values: str) -> bytes:
    """The page ``name`` of the app's static files with each ``{{key}}`` replaced by ``values[key]``, HTML-escaped."""
    page = resources.files("lossbench.userstudy").joinpath("static", name).read_text(encoding="utf-8")
    for key, value in values.items():
        page = page.replace("{{" + key + "}}", html.escape(value))
    return page.encode()


class Study:
    """Everything the handlers share: the manifest, the observers' plans and their answer files.

    Args:
        stimuli: Folder of the stimuli and their manifest.
        responses: Folder of the observers' answer files.
        observers: The registered observer ids.
        seed: Seed of the observers' trial orders and sides.
        viewing: Viewing conditions to tell observers (:func:`lossbench.userstudy.viewing.conditions`);
            by default the manifest's.
        sampling: "full" (every trial of the manifest, in each observer's seeded order) or "active" (each next
            trial by expected information gain from all observers' answers, :mod:`lossbench.userstudy.sampler`).
        trials_per_observer: How many trials each observer answers (default: all of the manifest's); with "full"
            the first ones of their order.
        practice_trials: How many practice trials each observer answers before their first real one: the last
            trials of their seeded order, labelled as practice, answered into
            ``<responses>/.practice/<observer>.jsonl``, which the analysis and active sampling never read. An observer
            who has a real answer gets no practice (again).

    Raises:
        ValueError: a bad manifest, observer id or listed image, no viewing conditions, or a
            responses folder that cannot be made.
    """

    def __init__(
        self,
        stimuli: str | Path,
        responses: str | Path,
        observers: list[str],
        seed: int = 0,
        viewing: dict | None = None,
        sampling: str = "full",
        trials_per_observer: int | None = None,
        practice_trials: int = 0,
    ):
        self.stimuli = Path(stimuli).resolve()
        self.manifest = load_manifest(self.stimuli / MANIFEST)
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling: expected one of {', '.join(SAMPLINGS)}, got {sampling!r}")
        available = len(self.manifest["trials"])
        if trials_per_observer is not None and not 1 <= trials_per_observer <= available:
            raise ValueError(
                f"trials per observer: expected 1 to the manifest's {available} trials, got {trials_per_observer}"
            )
        if not 0 <= practice_trials <= available:
            raise ValueError(f"practice trials: expected 0 to the manifest's {available} trials, got {practice_trials}")
        self.practice_trials = practice_trials
        self.sampling = sampling
        self.trials_per_observer = available if trials_per_observer is None else trials_per_observer
        if viewing is None and "viewing" not in self.manifest:
            raise ValueError(
                f"{self.stimuli / MANIFEST}: no viewing conditions (stimuli made without evaluation.flip): give them,"
                " e.g. serve with --ppd P or --distance-m D --monitor-width-m W --monitor-pixels N"
            )
        self.viewing = recorded(
            self.manifest["viewing"] if viewing is None else viewing,
            str(self.stimuli / MANIFEST) if viewing is None else "viewing",
        )
        if not observers:
            raise ValueError("no observers registered: pass --observer ID (repeatable) or --observers-file")
        self.plans = {check_observer(observer): plan(self.manifest, observer, seed) for observer in observers}
        # Practice: the last trials of each observer's own order (real stimuli of the study), under their own ids; the
        # last, not the first, so that the comparison just practised does not come again at once.
        self.practice = {
            observer: [
                PlannedTrial(PRACTICE_ID.format(k + 1), trial.image, trial.left, trial.right)
                for k, trial in enumerate(trials[len(trials) - practice_trials :])
            ]
            for observer, trials in self.plans.items()
        }
        self.trial_ids = {trial["id"] for trial in self.manifest["trials"]}
        # URL paths under /stimuli/: exactly the images of the manifest.
        self.images = {
            relative
            for entry in self.manifest["images"].values()
            for relative in [entry["reference"], *entry["outputs"].values()]
        }
        for relative in sorted(self.images):
            try:
                self.stimulus(relative)
            except LookupError as error:
                raise ValueError(f"{error.args[0]} (listed in {self.stimuli / MANIFEST})") from None
        self._files_lock = threading.Lock()
        self._observer_files: dict[str, ObserverFile] = {}
        self.responses = Path(responses)
        try:
            self.responses.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(f"{self.responses}: cannot make the responses folder ({error.strerror})") from None
        self.sessions = Sessions(self.responses)
        self.sampler = None
        if sampling == "active":
            self.sampler = ActiveSampler(self.manifest, seed)
            # The belief starts from every registered observer's confirmed answers: a restart takes it up again.
            for observer in self.plans:
                for record in read_answers(self.responses / f"{observer}.jsonl", observer).answers:
                    if record["trial"] in self.trial_ids:
                        self.sampler.record(record["chosen"], record["other"])

    def start_page(self) -> bytes:
        """The start page: the task, the number of comparisons (practice included) and their duration, and how far to
        sit."""
        comparisons = self.trials_per_observer
        # The duration counts the practice too: the observer sits through it.
        minutes = max(1, math.ceil((comparisons + self.practice_trials) * SECONDS_PER_COMPARISON / 60))
        distance, reason = instructions(self.viewing)
        practice = self.practice_trials
        first = f" after {practice} practice comparison{'s' if practice != 1 else ''} (not counted)" if practice else ""
        return render(
            _PAGES["/"],
            comparisons=f"{comparisons} comparison{'s' if comparisons != 1 else ''}{first}",
            minutes=f"{minutes} minute{'s' if minutes != 1 else ''}",
            seconds=str(SECONDS_PER_COMPARISON),
            distance=distance,
            viewing=reason,
        )

    def stimulus(self, relative: str) -> Path:
        """The resolved file of the manifest image at ``relative`` (a path inside the stimuli folder).

        Raises:
            LookupError: with a one-line reason, if the manifest lists no such image, or its file is
                missing, not a regular file, or (through a symlink) outside the stimuli folder.
        """
        if relative not in self.images:
            raise LookupError(f"{relative!r} is not an image of the manifest")
        listed = self.stimuli / relative
        try:
            path = listed.resolve(strict=True)
        except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop
            raise LookupError(f"{listed}: {getattr(error, 'strerror', None) or error}") from None
        if not path.is_relative_to(self.stimuli):
            raise LookupError(f"{listed}: leads to {path}, outside the stimuli folder {self.stimuli}")
        if not path.is_file():
            raise LookupError(f"{listed}: not a regular file")
        return path

    def read_stimulus(self, relative: str) -> bytes:
        """The bytes of the manifest image at ``relative``.

        Raises:
            LookupError: as :meth:`stimulus`, also when the file changes between the check and the read.
        """
        path = self.stimulus(relative)
        try:
            # No symlink and no FIFO can have taken the checked file's place since.
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(descriptor, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise LookupError(f"{path}: not a regular file")
                return handle.read()
        except OSError as error:
            raise LookupError(f"{path}: {error.strerror}") from None

    def observer_file(self, observer: str) -> ObserverFile:
        """The answer file of ``observer``, read on first use.

        Raises:
            StorageError: it cannot be read; the next call tries again.
        """
        with self._files_lock:
            if observer not in self._observer_files:
                self._observer_files[observer] = ObserverFile(self.responses / f"{observer}.jsonl", observer)
            return self._observer_files[observer]

    def practice_file(self, observer: str) -> ObserverFile:
        """The practice answer file of ``observer``, read on first use (``<responses>/.practice/<observer>.jsonl``).

        Raises:
            StorageError: it cannot be read; the next call tries again.
        """
        key = f"{PRACTICE}/{observer}"
        with self._files_lock:
            if key not in self._observer_files:
                self._observer_files[key] = ObserverFile(self.responses / PRACTICE / f"{observer}.jsonl", observer)
            return self._observer_files[key]

    def _make_practice_folder(self, trial_id: str) -> None:
        """Make the practice answers' folder, durably, on the first practice answer (not before, so that a study
        without practice, or one refused for its responses folder, never makes it).

        Raises:
            StorageError: it cannot be made.
        """
        folder = self.responses / PRACTICE
        if folder.is_dir():
            return
        try:
            folder.mkdir(exist_ok=True)
            sync_folder(self.responses)
        except OSError as error:
            raise StorageError(folder, f"answer to trial {trial_id} not saved", error) from None

    def _practice_pending(self, observer: str, answered: set[str]) -> PlannedTrial | None:
        """The practice trial ``observer`` answers now, given their real answers' trial ids; None: no practice (left).

        An observer with a real answer has no practice left, even if their practice file was lost.
        """
        if not self.practice_trials or answered:
            return None
        log = self.practice_file(observer)
        with log.lock:
            done = set(log.answered)
        return next((trial for trial in self.practice[observer] if trial.id not in done), None)

    def state(self, observer: str) -> dict:
        """Progress of ``observer`` and their current trial (None when done).

        Raises:
            StorageError: their answer file cannot be read.
        """
        log = self.observer_file(observer)
        with log.lock:
            answered = set(log.answered)
        trial = self._current(observer, answered)
        practice = [] if trial is None else [k for k, own in enumerate(self.practice[observer]) if own.id == trial.id]
        state = {
            "observer": observer,
            "done": min(len(answered), self.trials_per_observer),
            "total": self.trials_per_observer,
            "flicker_ms": self.manifest["flicker_ms"],
            # While practising, which practice trial of how many (from 1); None for the real trials.
            "practice": {"number": practice[0] + 1, "total": self.practice_trials} if practice else None,
            "trial": None,
        }
        if trial is not None:
            entry = self.manifest["images"][trial.image]
            state["trial"] = {
                "id": trial.id,
                "reference": f"/stimuli/{entry['reference']}",
                "left": f"/stimuli/{entry['outputs'][trial.left]}",
                "right": f"/stimuli/{entry['outputs'][trial.right]}",
                "width": entry["width"],
                "height": entry["height"],
            }
        return state

    def _current(self, observer: str, answered: set[str]) -> PlannedTrial | None:
        """The trial ``observer`` answers now, given the trial ids they answered; None once they have answered their
        share."""
        if len(answered) >= self.trials_per_observer:
            return None
        practice = self._practice_pending(observer, answered)
        if practice is not None:
            return practice
        if self.sampler is not None:
            return self.sampler.current(observer, answered)
        return next((trial for trial in self.plans[observer] if trial.id not in answered), None)

    def answer(self, observer: str, trial_id: str, choice: str) -> tuple[HTTPStatus, dict]:
        """Record ``choice`` for ``trial_id`` if it is the observer's current trial; the status and the new state or an
        error.

        Raises:
            StorageError: the answer was not saved (nothing of it is on disk), or the answer file cannot be read.
        """
        practice = trial_id in {trial.id for trial in self.practice[observer]}
        if trial_id not in self.trial_ids and not practice:
            return HTTPStatus.NOT_FOUND, {"error": f"unknown trial {trial_id!r}"}
        log = self.observer_file(observer)
        with log.lock:
            if trial_id in log.answered:
                return HTTPStatus.CONFLICT, {"error": f"trial {trial_id} is already answered"}
            current = self._current(observer, log.answered)
            if current is None:
                return HTTPStatus.CONFLICT, {"error": f"all {self.trials_per_observer} trials are answered"}
            if current.id != trial_id:
                return HTTPStatus.CONFLICT, {"error": f"trial {trial_id} is not the current trial ({current.id})"}
            chosen, other = (current.left, current.right) if choice == "left" else (current.right, current.left)
            position = len(log.answered)
            record = {
                "observer": observer,
                "trial": trial_id,
                "image": current.image,
                "left": current.left,
                "right": current.right,
                "chosen": chosen,
                "other": other,
                "position": position,
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            }
            if practice:  # to its own file, which neither the analysis nor the active sampler's belief reads
                target = self.practice_file(observer)
                with target.lock:
                    self._make_practice_folder(trial_id)
                    target.append(record)
            else:
                log.append(record)
            if self.sampler is not None and not practice:
                self.sampler.record(chosen, other)
        return HTTPStatus.OK, self.state(observer)
