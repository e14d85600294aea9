"""Jinja2 templates: inline ones in campaign strings and files under the workspace's templates/.

Every template runs in jinja2's sandbox (the immutable one: a template cannot change the data
it is given) with ``StrictUndefined``, so a misspelt name fails loudly instead of printing an
empty string. The names a template may use are :data:`TEMPLATE_NAMES`; the engine supplies:

``partner``
    the partner record, a mapping of the schema's fields (``partner.name``, ``partner["tier"]``).
    ``partner.x`` always means the field ``x``, even when a field is called ``items`` or ``keys``.
    A field that is ``null`` renders as an empty string; use ``partner.name or "there"`` for a
    fallback (jinja's ``default`` filter only replaces *undefined* values).
``campaign``
    the campaign: at least ``campaign.id`` and ``campaign.name``.
``step``
    the step being executed: at least ``step.id``.
``now``
    the logical time at which the step executes (an aware datetime).
``today``
    the local date of ``now`` in the campaign's timezone.
``unsubscribe_url``, ``preferences_url``
    the message's signed one-click unsubscribe page and preference page (engine.yaml's
    ``web.base_url``); empty strings when no ``base_url`` is set.

Static checks (:func:`check_inline`, :func:`check_file`, in :mod:`dsl.template_check`) report
problems at ``path:line:col`` of the file the text is in. Rendering (:func:`render_inline`,
:func:`render_file`, in :mod:`dsl.template_render`) raises :class:`TemplateError` for problems of
any kind, whose one-line message is what the engine records as the reason a step failed: also
when a render goes over its budget of time, output or value sizes (:mod:`dsl.template_limits`),
or when a template resolves outside templates/.

This module is where callers import from; the modules behind it import one way:
``template_limits`` <- ``template_render`` <- ``template_check``.
"""

from .template_check import check_file, check_inline, mentions
from .template_limits import MAX_OUTPUT, MAX_VALUE, RENDER_SECONDS
from .template_render import TEMPLATE_NAMES, TemplateError, environment, inside, render_file, render_inline

__all__ = [
    "MAX_OUTPUT", "MAX_VALUE", "RENDER_SECONDS", "TEMPLATE_NAMES", "TemplateError", "check_file", "check_inline",
    "environment", "inside", "mentions", "render_file", "render_inline",
]
