//! Images and audio: what can be known about them without a model. Images (PNG, JPEG, GIF,
//! WebP) get their format and dimensions from the header; audio (WAV, MP3, M4A, OGG, FLAC) is
//! demuxed packet by packet (no decoding) to measure its real duration and sample rate, so an
//! empty or cut-off recording is reported instead of being sent to a transcription model.
//! Searchable text for media comes from providers (vision, transcription), not from here.

use std::io::Cursor;

use serde_json::{Map, Value};
use symphonia::core::errors::Error as AudioError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use super::ExtractError;

/// MIME types of the images we ingest.
pub const IMAGE_MIME_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];
/// MIME types (as `infer` names them) of the audio we ingest.
pub const AUDIO_MIME_TYPES: [&str; 8] = [
    "audio/x-wav",
    "audio/wav",
    "audio/mpeg",
    "audio/m4a",
    "audio/mp4",
    "audio/ogg",
    "audio/opus",
    "audio/x-flac",
];

/// Facts about an image, stored under `metadata.extraction`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: &'static str,
    pub mime_type: &'static str,
    pub width: usize,
    pub height: usize,
}

impl ImageInfo {
    pub fn metadata(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("format".into(), self.format.into());
        m.insert("width".into(), self.width.into());
        m.insert("height".into(), self.height.into());
        m
    }
}

/// Reads an image's format and dimensions from its header.
pub fn image_info(bytes: &[u8]) -> Result<ImageInfo, ExtractError> {
    let corrupt = |reason: String| ExtractError::Corrupt {
        kind: "image",
        reason,
    };
    let (format, mime_type) = match imagesize::image_type(bytes) {
        Ok(imagesize::ImageType::Png) => ("png", "image/png"),
        Ok(imagesize::ImageType::Jpeg) => ("jpeg", "image/jpeg"),
        Ok(imagesize::ImageType::Gif) => ("gif", "image/gif"),
        Ok(imagesize::ImageType::Webp) => ("webp", "image/webp"),
        Ok(other) => {
            return Err(ExtractError::Unsupported(format!(
                "{other:?} images are not supported (PNG, JPEG, GIF and WebP are)"
            )));
        }
        Err(_) => {
            return Err(corrupt(
                "the file is not a PNG, JPEG, GIF or WebP image (no image signature)".into(),
            ));
        }
    };
    let size = imagesize::blob_size(bytes).map_err(|e| {
        corrupt(format!(
            "the {format} header is damaged or cut off ({e}); the dimensions cannot be read"
        ))
    })?;
    if size.width == 0 || size.height == 0 {
        return Err(corrupt(format!(
            "the {format} header declares an empty {}×{} picture",
            size.width, size.height
        )));
    }
    Ok(ImageInfo {
        format,
        mime_type,
        width: size.width,
        height: size.height,
    })
}

/// Facts about a recording, stored under `metadata.extraction`.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    /// Container: wave, mp3, isomp4, ogg, flac.
    pub format: String,
    pub sample_rate: u32,
    pub channels: Option<u32>,
    pub duration_seconds: f64,
}

impl AudioInfo {
    pub fn metadata(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("format".into(), self.format.clone().into());
        m.insert("sample_rate".into(), self.sample_rate.into());
        if let Some(c) = self.channels {
            m.insert("channels".into(), c.into());
        }
        m.insert(
            "duration_seconds".into(),
            ((self.duration_seconds * 1000.0).round() / 1000.0).into(),
        );
        m
    }
}

/// Share of the declared length that must really be present; encoders pad the last packet, so
/// the packets may add up to a little more (never meaningfully less) than the header says.
const COMPLETE_SHARE: f64 = 0.98;

/// Measures a recording by walking its packets: the container's header may promise a length
/// the file no longer holds (an interrupted upload or copy), which is reported as truncated.
pub fn audio_info(bytes: &[u8]) -> Result<AudioInfo, ExtractError> {
    let corrupt = |reason: String| ExtractError::Corrupt {
        kind: "audio",
        reason,
    };
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut reader = symphonia::default::get_probe()
        .probe(
            &Hint::new(),
            source,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| {
            corrupt(format!(
                "not a readable WAV, MP3, M4A, OGG or FLAC recording ({e})"
            ))
        })?;
    let format = reader.format_info().short_name.to_string();
    let track = reader
        .default_track(TrackType::Audio)
        .ok_or_else(|| corrupt(format!("the {format} file holds no audio track")))?;
    let track_id = track.id;
    let params = track.codec_params.as_ref().and_then(|c| c.audio());
    let sample_rate = params
        .and_then(|p| p.sample_rate)
        .filter(|r| *r > 0)
        .ok_or_else(|| corrupt(format!("the {format} file does not state a sample rate")))?;
    let channels = params
        .and_then(|p| p.channels.as_ref())
        .map(|c| c.count() as u32);
    let time_base = track.time_base;
    let seconds = |ticks: u64| -> f64 {
        match time_base {
            Some(tb) => ticks as f64 * f64::from(tb.numer.get()) / f64::from(tb.denom.get()),
            None => ticks as f64 / f64::from(sample_rate),
        }
    };
    let declared = track.duration.map(|d| seconds(d.get()));
    let mut ticks: u64 = 0;
    let mut cut_off = false;
    loop {
        match reader.next_packet() {
            Ok(Some(packet)) => {
                if packet.track_id == track_id {
                    ticks = ticks.saturating_add(packet.dur.get());
                }
            }
            Ok(None) => break,
            Err(AudioError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                cut_off = true;
                break;
            }
            Err(AudioError::ResetRequired) => break, // a chained stream: the first one counts
            Err(e) => {
                return Err(corrupt(format!(
                    "the {format} stream is damaged after {:.2} s: {e}",
                    seconds(ticks)
                )));
            }
        }
    }
    let present = seconds(ticks);
    if present <= 0.0 {
        return Err(corrupt(format!(
            "the {format} file contains no audio (0 seconds)"
        )));
    }
    let duration = match declared {
        Some(d) if present < d * COMPLETE_SHARE => {
            return Err(corrupt(format!(
                "the {format} file is truncated: its header promises {d:.2} s but only {present:.2} s of audio are present"
            )));
        }
        Some(d) if d > 0.0 => d,
        _ if cut_off => {
            return Err(corrupt(format!(
                "the {format} file is truncated: it ends in the middle of a packet after {present:.2} s"
            )));
        }
        _ => present,
    };
    Ok(AudioInfo {
        format,
        sample_rate,
        channels,
        duration_seconds: duration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(samples: usize, declared: Option<usize>) -> Vec<u8> {
        let data_len = (declared.unwrap_or(samples) * 2) as u32;
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(36 + data_len).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes()); // PCM
        b.extend_from_slice(&1u16.to_le_bytes()); // mono
        b.extend_from_slice(&8000u32.to_le_bytes());
        b.extend_from_slice(&16000u32.to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&16u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&data_len.to_le_bytes());
        for i in 0..samples {
            b.extend_from_slice(&((i as i16).wrapping_mul(97)).to_le_bytes());
        }
        b
    }

    #[test]
    fn measures_a_complete_wav() {
        let info = audio_info(&wav(12_000, None)).unwrap();
        assert_eq!(info.sample_rate, 8000);
        assert_eq!(info.channels, Some(1));
        assert!((info.duration_seconds - 1.5).abs() < 1e-9, "{info:?}");
    }

    #[test]
    fn refuses_empty_and_truncated_recordings() {
        let empty = audio_info(&wav(0, None)).unwrap_err().to_string();
        assert!(empty.contains("no audio (0 seconds)"), "{empty}");
        let cut = audio_info(&wav(4000, Some(16_000)))
            .unwrap_err()
            .to_string();
        assert!(
            cut.contains("truncated") && cut.contains("promises 2.00 s"),
            "{cut}"
        );
        let junk = audio_info(b"RIFF....not audio at all")
            .unwrap_err()
            .to_string();
        assert!(junk.contains("cannot read audio"), "{junk}");
    }

    #[test]
    fn reads_image_headers_and_names_what_is_wrong() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&480u32.to_be_bytes());
        png.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        let info = image_info(&png).unwrap();
        assert_eq!((info.format, info.width, info.height), ("png", 640, 480));
        let text = image_info(b"just words").unwrap_err().to_string();
        assert!(text.contains("not a PNG, JPEG, GIF or WebP"), "{text}");
        let cut = image_info(&png[..14]).unwrap_err().to_string();
        assert!(cut.contains("damaged or cut off"), "{cut}");
    }
}
