"""TalkCLIP model: configs (JSON), text/video/audio encoders, decoder, discriminators, losses,
the TA-MEAD training reader and checkpoints (safetensors). Torch is imported by the submodules.

- config.py: load_config("tiny" | "base" | path) -> TalkCLIPConfig
- text.py / style.py / audio.py / decoder.py / discriminators.py / losses.py: the modules
- talkclip.py: TalkCLIP (text_style, video_style, generate, forward -> (outputs, losses))
- schedule.py: stages and the text-probability schedule p_schedule(step, cfg)
- data.py: TA-MEAD reader, window sampler, DataLoader
- checkpoint.py: save_checkpoint / load_checkpoint / load_sync_checkpoint
- renderer.py: the training-free renderer (blendshape rig or fitted basis, torch mesh warp)
- syncnet.py: SyncNet (syncnet_python's layout), MFCC, offset/confidence; load_syncnet (safetensors)
"""
