"""NeuronCriteria and SynapseCriteria: value objects that render to SQL over the store.

They take exactly neuprint-python 0.6.4's arguments (so scripts port by changing one import) and
follow its matching rules (docs/semantics.md): lists mean "any of", ``None``/``IsNull`` in a list
matches missing values, type/instance (and the other type-like fields when ``regex=True``) are
regex-optional with ``regex='guess'``, type and instance are OR'ed, ROI requirements use ``roi_req``.
Where neuprint-python would silently return nothing (an unknown ROI, a property the dataset lacks),
these raise QueryError naming the argument.
"""

from __future__ import annotations

import copy
import difflib
import re
import warnings
from collections.abc import Collection, Iterable

import numpy as np
import pandas as pd

from flatprint.errors import NoMatchWarning, QueryError
from flatprint.store.columns import POINT_COLUMNS, SYNAPSE_COLUMNS
from flatprint.store.sql import quote_ident, sql_literal


class NotNull:
    """Match any non-missing value of a property (``type=NotNull``)."""


class IsNull:
    """Match a missing property (``type=IsNull``), like ``type=[None]``."""


_REGEX_CHARS = re.compile(r"[\\.?\[\]+^$*]")

# Exact-match string or integer fields, as in neuprint-python (argument name -> property name).
EXACT_FIELDS = [
    "status",
    "statusLabel",
    "group",
    "serial",
    "zapbenchId",
    "birthtime",
    "cellBodyFiber",
    "celltypePredictedNt",
    "class_",
    "consensusNt",
    "description",
    "dimorphism",
    "entryNerve",
    "exitNerve",
    "flywireId",
    "fruDsx",
    "hemibrainBodyId",
    "hemilineage",
    "itoleeHl",
    "locationType",
    "longTract",
    "matchingNotes",
    "mcnsSerial",
    "modality",
    "ntReference",
    "origin",
    "otherNt",
    "otherNtReference",
    "predictedNt",
    "prefix",
    "receptorType",
    "rootSide",
    "serialMotif",
    "somaNeuromere",
    "somaSide",
    "source",
    "subclass",
    "subclassabbr",
    "superclass",
    "supertype",
    "synonyms",
    "systematicType",
    "tag",
    "target",
    "transmission",
    "trumanHl",
    "vfbId",
]
# Secondary type fields: always exact in neuprint-python 0.6.4 (a known quirk we keep for parity).
SECONDARY_TYPE_FIELDS = ["flywireType", "hemibrainType", "mancType"]
NULLCHECK_FIELDS = list(POINT_COLUMNS)


def _listify(value) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or value in (IsNull, NotNull) or not isinstance(value, Iterable):
        return [value]
    if isinstance(value, (pd.Series, pd.Index, np.ndarray)):
        return value.tolist()
    return list(value)


SUGGESTIONS = 5  # close values named in a "did you mean" hint


def close_values(value: str, known: Iterable[str], n: int = SUGGESTIONS, cutoff: float = 0.6) -> list[str]:
    """Up to ``n`` of ``known`` closest to ``value``: equal ignoring case first, then by similarity
    (difflib's ratio on lower case), so 'dnge104' and 'DNge10' both find 'DNge104'."""
    by_lower: dict[str, list[str]] = {}
    for k in known:
        by_lower.setdefault(k.lower(), []).append(k)
    out = list(by_lower.get(value.lower(), []))
    for lower in difflib.get_close_matches(value.lower(), list(by_lower), n=n + 1, cutoff=cutoff):
        out += [k for k in by_lower[lower] if k not in out]
    return out[:n]


def did_you_mean(close: list[str]) -> str:
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def check_rois(argument: str, rois: Iterable[str], known: Collection[str]) -> None:
    """Raise QueryError naming the argument and suggesting the closest valid ROI names (neuprint-python
    raises too, "Unrecognized ROIs", rather than returning nothing)."""
    known = list(known)
    for roi in rois:
        if roi not in known:
            raise QueryError(f"{argument}: unknown ROI {roi!r}{did_you_mean(close_values(roi, known, cutoff=0.5))}")


def unmatched_values(criteria: NeuronCriteria, client, argument: str = "") -> list[str]:
    """A line for every string value of ``criteria`` that matches no neuron (no segment with
    label='Segment') in the store by itself, with the closest stored values: likely misspellings.

    Meant for after a query came back empty (it reads the distinct values of each column it checks),
    so the normal path costs nothing. A value that matches something is never reported, even if the
    combination of criteria matches nothing (that result is legitimately empty). Regex values are
    reported when they match nothing, with the values they would match ignoring case."""
    available = set(client.neuron_keys)
    scope = "is_neuron" if criteria.label == "Neuron" else "TRUE"
    what = "neuron" if criteria.label == "Neuron" else "segment"
    # The string shorthand fetch_neurons("DNge104") sets type and instance alike (OR'ed): check them as one.
    groups = (
        [("type/instance", ["type", "instance"])]
        if criteria.type and criteria.type == criteria.instance
        else [("type", ["type"]), ("instance", ["instance"])]
    )
    groups += [(name, ["class" if name == "class_" else name]) for name in EXACT_FIELDS + SECONDARY_TYPE_FIELDS]
    regex_fields = {"type", "instance", *SECONDARY_TYPE_FIELDS}
    lines = []
    for name, props in groups:
        values = [v for v in getattr(criteria, "type" if name == "type/instance" else name) if isinstance(v, str)]
        if not values or not all(p in available for p in props):
            continue
        stored = sorted(
            {
                v
                for p in props
                for (v,) in client.sql(
                    f"SELECT DISTINCT CAST({quote_ident(p)} AS VARCHAR) FROM segments "
                    f"WHERE {scope} AND {quote_ident(p)} IS NOT NULL"
                )[1]
            }
        )
        regex = criteria.regex and props[0] in regex_fields
        for value in values:
            if regex:
                try:
                    pattern = re.compile(value)
                except re.error:
                    continue  # where() reports an invalid pattern
                if any(pattern.fullmatch(s) for s in stored):
                    continue
                folded = re.compile(value, re.IGNORECASE)
                close = [s for s in stored if folded.fullmatch(s)][:SUGGESTIONS]
                kind = "regex"
            else:
                if value in stored:
                    continue
                close, kind = close_values(value, stored), "value"
            note = ""
            if criteria.label == "Neuron" and not regex:
                equal = " OR ".join(f"CAST({quote_ident(p)} AS VARCHAR) = {sql_literal(value)}" for p in props)
                if client.sql(f"SELECT count(*) FROM segments WHERE {equal}")[1][0][0]:
                    note = (
                        " (only segments that are not :Neuron have it; NeuronCriteria(label='Segment', ...) "
                        "includes them)"
                    )
            lines.append(
                f"{argument}{name}: {kind} {value!r} matches no {what} in this store{note}{did_you_mean(close)}"
            )
    return lines


def warn_unmatched(criteria: NeuronCriteria, client, argument: str = "", stacklevel: int = 4) -> None:
    """After an empty result: a NoMatchWarning for each criteria value that matches nothing by itself.
    ``stacklevel`` 4 points at the user's call through ``fetch_x`` and its ``inject_client`` wrapper."""
    for line in unmatched_values(criteria, client, argument):
        warnings.warn(line, NoMatchWarning, stacklevel=stacklevel)


# Values NeuronCriteria's repr leaves out (label's depends on bodyId) and fields that select nothing.
_REPR_DEFAULTS = {
    "regex": False,
    "roi_req": "all",
    "min_roi_inputs": 1,
    "min_roi_outputs": 1,
    "min_pre": 0,
    "min_post": 0,
    "max_closestLandmarkDistanceMicrons": np.inf,
}
_NOT_SELECTING = frozenset(
    {"regex", "roi_req", "min_roi_inputs", "min_roi_outputs", "label", "max_closestLandmarkDistanceMicrons"}
)


def _unset(value) -> bool:
    """None or an empty list or set: a criterion not given."""
    return value is None or (isinstance(value, (list, set, frozenset)) and not value)


class NeuronCriteria:
    """Which neurons (or segments) a query is about. All arguments are keyword-only but ``matchvar``."""

    def __init__(
        self,
        matchvar="n",
        *,
        bodyId=None,
        type=None,
        instance=None,
        regex="guess",
        status=None,
        statusLabel=None,
        rois=None,
        inputRois=None,
        outputRois=None,
        roi_req="all",
        min_roi_inputs=1,
        min_roi_outputs=1,
        group=None,
        serial=None,
        zapbenchId=None,
        cropped=None,
        flywireType=None,
        hemibrainType=None,
        mancType=None,
        birthtime=None,
        cellBodyFiber=None,
        celltypePredictedNt=None,
        class_=None,
        consensusNt=None,
        description=None,
        dimorphism=None,
        entryNerve=None,
        exitNerve=None,
        flywireId=None,
        fruDsx=None,
        hemibrainBodyId=None,
        hemilineage=None,
        itoleeHl=None,
        locationType=None,
        longTract=None,
        matchingNotes=None,
        mcnsSerial=None,
        modality=None,
        ntReference=None,
        origin=None,
        otherNt=None,
        otherNtReference=None,
        predictedNt=None,
        prefix=None,
        receptorType=None,
        rootSide=None,
        serialMotif=None,
        somaNeuromere=None,
        somaSide=None,
        source=None,
        subclass=None,
        subclassabbr=None,
        superclass=None,
        supertype=None,
        synonyms=None,
        systematicType=None,
        tag=None,
        target=None,
        transmission=None,
        trumanHl=None,
        vfbId=None,
        label=None,
        min_pre=0,
        min_post=0,
        max_closestLandmarkDistanceMicrons=np.inf,
        somaLocation=None,
        tosomaLocation=None,
        rootLocation=None,
        soma=None,
        client=None,
    ):
        if not isinstance(matchvar, str) or not re.fullmatch(r"[a-z][a-zA-Z0-9]*", matchvar):
            raise QueryError(
                f"matchvar must be a lowercase identifier, got {matchvar!r} "
                "(did you mean to pass a bodyId, type or instance?)"
            )
        self.matchvar = matchvar
        self.client = client
        self.bodyId = [int(b) for b in _listify(bodyId)]
        self.type = _listify(type)
        self.instance = _listify(instance)
        for name in ("type", "instance"):
            for v in getattr(self, name):
                if not (v is None or isinstance(v, str) or v in (IsNull, NotNull)):
                    raise QueryError(f"{name}: expected a string, IsNull, NotNull or None, got {v!r}")
        if regex not in (True, False, "guess"):
            raise QueryError(f"regex must be True, False or 'guess', got {regex!r}")
        fields = dict(
            status=status,
            statusLabel=statusLabel,
            group=group,
            serial=serial,
            zapbenchId=zapbenchId,
            birthtime=birthtime,
            cellBodyFiber=cellBodyFiber,
            celltypePredictedNt=celltypePredictedNt,
            class_=class_,
            consensusNt=consensusNt,
            description=description,
            dimorphism=dimorphism,
            entryNerve=entryNerve,
            exitNerve=exitNerve,
            flywireId=flywireId,
            fruDsx=fruDsx,
            hemibrainBodyId=hemibrainBodyId,
            hemilineage=hemilineage,
            itoleeHl=itoleeHl,
            locationType=locationType,
            longTract=longTract,
            matchingNotes=matchingNotes,
            mcnsSerial=mcnsSerial,
            modality=modality,
            ntReference=ntReference,
            origin=origin,
            otherNt=otherNt,
            otherNtReference=otherNtReference,
            predictedNt=predictedNt,
            prefix=prefix,
            receptorType=receptorType,
            rootSide=rootSide,
            serialMotif=serialMotif,
            somaNeuromere=somaNeuromere,
            somaSide=somaSide,
            source=source,
            subclass=subclass,
            subclassabbr=subclassabbr,
            superclass=superclass,
            supertype=supertype,
            synonyms=synonyms,
            systematicType=systematicType,
            tag=tag,
            target=target,
            transmission=transmission,
            trumanHl=trumanHl,
            vfbId=vfbId,
            flywireType=flywireType,
            hemibrainType=hemibrainType,
            mancType=mancType,
        )
        for name, value in fields.items():
            setattr(self, name, _listify(value))
        if regex == "guess":
            regex = any(
                isinstance(v, str) and _REGEX_CHARS.search(v)
                for name in ("type", "instance", *SECONDARY_TYPE_FIELDS)
                for v in getattr(self, name)
            )
        self.regex = bool(regex)
        if roi_req not in ("any", "all"):
            raise QueryError(f"roi_req must be 'any' or 'all', got {roi_req!r}")
        self.roi_req = roi_req
        self.inputRois = set(_listify(inputRois))
        self.outputRois = set(_listify(outputRois))
        rois = set(_listify(rois))
        if rois and not rois >= self.inputRois:
            raise QueryError("rois must be a superset of inputRois")
        if rois and not rois >= self.outputRois:
            raise QueryError("rois must be a superset of outputRois")
        self.rois = rois | self.inputRois | self.outputRois
        if min_roi_inputs > 1 and not self.inputRois:
            raise QueryError("min_roi_inputs needs a list of inputRois")
        if min_roi_outputs > 1 and not self.outputRois:
            raise QueryError("min_roi_outputs needs a list of outputRois")
        self.min_roi_inputs, self.min_roi_outputs = min_roi_inputs, min_roi_outputs
        if cropped not in (None, True, False):
            raise QueryError(f"cropped must be True, False or None, got {cropped!r}")
        self.cropped = cropped
        for name, value in (
            ("somaLocation", somaLocation),
            ("tosomaLocation", tosomaLocation),
            ("rootLocation", rootLocation),
        ):
            if value not in (None, IsNull, NotNull):
                raise QueryError(f"{name}: only IsNull or NotNull can be matched")
            setattr(self, name, value)
        if soma not in (None, True, False):
            raise QueryError(f"soma must be True, False or None, got {soma!r}")
        if soma is not None and somaLocation is not None:
            raise QueryError("use somaLocation=NotNull/IsNull instead of the deprecated soma argument, not both")
        self.soma = soma
        if not label:
            label = "Segment" if self.bodyId else "Neuron"
        if label not in ("Neuron", "Segment"):
            raise QueryError(f"label must be 'Neuron' or 'Segment', got {label!r}")
        self.label = label
        for name, value in (("min_pre", min_pre), ("min_post", min_post)):
            if value is None or value < 0:
                raise QueryError(f"{name} must be a non-negative number, got {value!r}")
        self.min_pre, self.min_post = min_pre, min_post
        self.max_closestLandmarkDistanceMicrons = max_closestLandmarkDistanceMicrons

    # ---------------------------------------------------------------- comparisons and display
    def _state(self):
        return {k: v for k, v in vars(self).items() if k not in ("matchvar", "client")}

    def __eq__(self, other):
        if not isinstance(other, NeuronCriteria):
            return NotImplemented
        return self._state() == other._state()

    def __repr__(self):
        # (every fetch_* call writes it into its result's provenance: built without a dict per field)
        defaults = {**_REPR_DEFAULTS, "label": "Segment" if self.bodyId else "Neuron"}
        parts = []
        for k, v in self._state().items():
            if _unset(v) or v == defaults.get(k):
                continue
            parts.append(f"{k}={sorted(v) if isinstance(v, set) else v!r}")
        return f"NeuronCriteria({', '.join(parts)})"

    def is_empty(self) -> bool:
        """True when the criteria select every :Neuron (or :Segment)."""
        if self.bodyId:  # the common case, without a look at every other field
            return False
        return all(
            _unset(v) or (isinstance(v, (int, float, np.number)) and v == 0)
            for k, v in self._state().items()
            if k not in _NOT_SELECTING
        ) and np.isposinf(self.max_closestLandmarkDistanceMicrons)

    # ---------------------------------------------------------------- SQL
    def table(self, client) -> str:
        """The table whose rows ``where`` selects from: ``neurons`` (the :Neuron rows of
        ``segments``, flatprint.ingest.summaries) for :Neuron criteria when the store has it."""
        return "neurons" if self.label == "Neuron" and client.store.has_table("neurons") else "segments"

    def where(self, client, alias: str = "n") -> str:
        """A SQL boolean expression over ``segments AS alias`` (label included)."""
        available = set(client.neuron_keys)
        exprs = []
        if self.label == "Neuron":
            exprs.append(f"{alias}.is_neuron")
        exprs.append(_values_expr(alias, "bodyId", self.bodyId, False, available, "bodyId"))
        t = _values_expr(alias, "type", self.type, self.regex, available, "type")
        i = _values_expr(alias, "instance", self.instance, self.regex, available, "instance")
        exprs.append(f"(({t}) OR ({i}))" if t and i else t or i)
        for name in EXACT_FIELDS + SECONDARY_TYPE_FIELDS:
            prop = "class" if name == "class_" else name
            exprs.append(_values_expr(alias, prop, getattr(self, name), False, available, name))
        if self.cropped is not None:
            exprs.append("FALSE" if self.cropped else "TRUE")  # male-cns has no 'cropped' flag: never true
        for name in NULLCHECK_FIELDS:
            value = getattr(self, name)
            if value is not None:
                if name not in available:
                    exprs.append("TRUE" if value is IsNull else "FALSE")
                else:
                    exprs.append(f"{alias}.{quote_ident(name)} IS {'NOT ' if value is NotNull else ''}NULL")
        if self.soma is not None:
            exprs.append(f"{alias}.somaLocation IS {'NOT ' if self.soma else ''}NULL")
        if self.min_pre:
            exprs.append(f"{alias}.pre >= {sql_literal(self.min_pre)}")
        if self.min_post:
            exprs.append(f"{alias}.post >= {sql_literal(self.min_post)}")
        if not np.isposinf(self.max_closestLandmarkDistanceMicrons):
            raise QueryError("max_closestLandmarkDistanceMicrons: this dataset has no closestLandmarkDistanceMicrons")
        exprs.append(self._roi_expr(client, alias))
        exprs = [e for e in exprs if e]
        return " AND ".join(f"({e})" for e in exprs) if exprs else "TRUE"

    def check_roi_names(self, client) -> None:
        """Raise QueryError for an ROI name the store does not know (naming the argument)."""
        known = client.all_rois
        check_rois("inputRois", self.inputRois, known)
        check_rois("outputRois", self.outputRois, known)
        check_rois("rois", self.rois, known)

    def _roi_expr(self, client, alias: str) -> str:
        if not self.rois:
            return ""
        self.check_roi_names(client)
        out = []
        joiner = " OR " if self.roi_req == "any" else " AND "
        # Plain intersection: the neuron has any synapse in the ROI (neuPrint's ROI boolean property).
        plain = [
            f"EXISTS (SELECT 1 FROM segment_rois r WHERE r.bodyId = {alias}.bodyId AND r.roi = {sql_literal(roi)})"
            for roi in sorted(self.rois)
        ]
        out.append("(" + joiner.join(plain) + ")")
        for rois, column, minimum in (
            (self.inputRois, "post", self.min_roi_inputs),
            (self.outputRois, "pre", self.min_roi_outputs),
        ):
            if not rois:
                continue
            need = 1 if self.roi_req == "any" else len(rois)
            roi_list = ", ".join(sql_literal(r) for r in sorted(rois))
            out.append(
                f"(SELECT count(*) FROM segment_rois r WHERE r.bodyId = {alias}.bodyId AND r.roi IN ({roi_list}) "
                f"AND r.{column} >= {sql_literal(max(minimum, 1))}) >= {need}"
            )
        return " AND ".join(out)


def _values_expr(alias: str, prop: str, values: list, regex: bool, available: set, argument: str) -> str:
    if not values:
        return ""
    if prop not in available:
        if all(v is None or v is IsNull for v in values):
            return "TRUE"
        raise QueryError(f"{argument}: this dataset has no neuron property {prop!r}")
    col = f"{alias}.{quote_ident(prop)}"
    wants_null = any(v is None or v is IsNull for v in values)
    concrete = [v for v in values if v is not None and v is not IsNull and v is not NotNull]
    if any(v is NotNull for v in values):
        if len(values) > 1:
            raise QueryError(f"{argument}: NotNull cannot be combined with other values")
        return f"{col} IS NOT NULL"
    parts = []
    if concrete:
        if regex:
            for v in concrete:
                if not isinstance(v, str):
                    raise QueryError(f"{argument}: regex values must be strings, got {v!r}")
                try:
                    re.compile(v)
                except re.error as exc:
                    raise QueryError(f"{argument}: invalid regular expression {v!r}: {exc}") from None
            pattern = concrete[0] if len(concrete) == 1 else "|".join(f"({v})" for v in concrete)
            parts.append(f"regexp_full_match({col}, {sql_literal(pattern)})")
        elif len(concrete) == 1:
            parts.append(f"{col} = {sql_literal(concrete[0])}")
        else:
            parts.append(f"{col} IN ({', '.join(sql_literal(v) for v in concrete)})")
    if wants_null:
        parts.append(f"{col} IS NULL")
    return " OR ".join(parts)


def copy_as_neuroncriteria(obj, client=None) -> NeuronCriteria:
    """neuprint-python's coercions: None, int(s), str(s), a DataFrame with bodyId, or a criteria object."""

    if isinstance(obj, NeuronCriteria):
        nc = copy.copy(obj)
        if client is not None:
            nc.client = client
        return nc
    if isinstance(obj, pd.DataFrame):
        if "bodyId" not in obj.columns:
            raise QueryError("a DataFrame used as criteria needs a 'bodyId' column")
        return NeuronCriteria(bodyId=obj["bodyId"].to_numpy(), client=client)
    if obj is None:
        return NeuronCriteria(client=client)
    if isinstance(obj, str):
        return NeuronCriteria(type=obj, instance=obj, client=client)
    if isinstance(obj, (int, np.integer)):
        return NeuronCriteria(bodyId=obj, client=client)
    if isinstance(obj, Collection):
        items = [x for x in obj if x is not None]
        if not items:
            raise QueryError(f"can't make NeuronCriteria from {obj!r}; create one explicitly")
        if isinstance(items[0], (int, np.integer)):
            return NeuronCriteria(bodyId=list(obj), client=client)
        if isinstance(items[0], str):
            return NeuronCriteria(type=list(obj), instance=list(obj), client=client)
    raise QueryError(f"can't make NeuronCriteria from {obj!r}; create one explicitly")


class SynapseCriteria:
    """Which synapses: ROIs (any of), type 'pre'/'post', confidence (strictly above), primary_only."""

    def __init__(self, matchvar="s", *, rois=None, type=None, confidence=None, primary_only=True, client=None):
        from flatprint.query.client import default_client  # noqa: PLC0415 - query.client imports this module

        client = client or default_client()
        self.matchvar = matchvar
        self.rois = _listify(rois)
        check_rois("rois", self.rois, client.all_rois)
        type = type or None
        if type not in ("pre", "post", None):
            raise QueryError(f"type: expected 'pre' or 'post', got {type!r}")
        nonprimary = set(self.rois) - set(client.primary_rois)
        if nonprimary and primary_only:
            raise QueryError(f"rois: {sorted(nonprimary)} are not primary ROIs; pass primary_only=False")
        if confidence is None:
            confidence = client.store.meta.get("postHighAccuracyThreshold", 0.0)
        if not (0.0 <= confidence <= 1.0):
            raise QueryError(f"confidence must be within [0, 1], got {confidence!r}")
        self.type = type
        self.confidence = confidence
        self.primary_only = primary_only

    def __eq__(self, other):
        return isinstance(other, SynapseCriteria) and vars(self) == vars(other)

    def __repr__(self):
        return (
            f"SynapseCriteria(rois={self.rois!r}, type={self.type!r}, confidence={self.confidence!r}, "
            f"primary_only={self.primary_only!r})"
        )

    def where(self, alias: str = "s", *, use_rois: bool = True, use_type: bool = True) -> str:
        """A SQL filter over ``synapses AS alias``: ROI membership (any level), type, confidence."""
        exprs = []
        if self.rois and use_rois:
            roi_list = ", ".join(sql_literal(r) for r in self.rois)
            exprs.append(
                f"EXISTS (SELECT 1 FROM roi_map m WHERE m.roi IN ({roi_list}) AND "
                f"((m.roi_set = 'primary' AND m.label = {alias}.primary_label) OR "
                f"(m.roi_set = 'major' AND m.label = {alias}.major_label)))"
            )
        if self.confidence:
            exprs.append(f"{alias}.{SYNAPSE_COLUMNS['confidence']} > {sql_literal(float(self.confidence))}")
        if self.type and use_type:
            exprs.append(f"{alias}.{SYNAPSE_COLUMNS['type']} = {sql_literal(self.type)}")
        return " AND ".join(exprs) if exprs else "TRUE"
