"""Making every download route of the metric libraries raise, so a test proves nothing is fetched."""

from __future__ import annotations

import urllib.request

import pytest
import torch


def refuse_downloads(mp: pytest.MonkeyPatch) -> list[str]:
    """Patch (through ``mp``) every route pyiqa, torchvision, timm and OpenAI CLIP download by: torch.hub,
    pyiqa's own downloader, the Hugging Face hub (directly and through timm) and ``urllib.request.urlopen``
    (CLIP). Each raises ``AssertionError``; the returned list records the attempts."""
    import huggingface_hub
    from pyiqa.utils import download_util

    calls: list[str] = []

    def refuse(*args, **kwargs):
        calls.append(str(args[:2]))
        raise AssertionError(f"download attempted: {args[:2]}")

    mp.setattr(torch.hub, "download_url_to_file", refuse)
    mp.setattr(download_util, "download_url_to_file", refuse)
    mp.setattr(download_util, "load_file_from_url", refuse)
    mp.setattr(huggingface_hub, "hf_hub_download", refuse)
    mp.setattr(urllib.request, "urlopen", refuse)
    try:
        import timm.models._hub as timm_hub
    except ImportError:
        pass
    else:
        mp.setattr(timm_hub, "hf_hub_download", refuse)
    return calls
